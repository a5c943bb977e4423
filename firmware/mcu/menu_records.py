"""The OLED menu's void and packaging return, while the clerk goes through one
(docs/mcu.md "Voids and returns at the menu").

Apart from cart.py so that its code is in the heap only while a void or a
return is under way: cart.py imports it for a press on one of the two
entries, and it lets go of itself when that ends. A terminal that only sells
never carries it, and the heap it sells in is measured to a few KB
(tests/test_mcu_memory.py: 370K from bytecode, where the config sync's 17 KB
string must still find a block).

The record is the counter's own `void` / `take_back`, called through the
terminal's `counter_record` as for a stdin line: the same checks, OLED
result, buzzer and LED, VOIDED / RETURNED / ERROR line and uplink.
"""

import json
import sys

RECENT = 64        # records looked back for the last sale: one ledger checkpoint's worth
RETURN_MAX = 50    # containers in one return: more than a farmer carries in, bounded for the heap


def press(cart, button):
    """OK on the void or the return entry opens it; a press while one is under
    way is its. When it ends, the menu starts again at its first entry after
    a record (the OLED keeps the counter's result until the next press), or
    is shown again after NEXT; and this module leaves the heap."""
    flow = cart.flow
    if flow is None:
        flow = cart.flow = (Void, Return)[cart.cursor - len(cart.menu)](cart)
    else:
        flow.press(button)
    if flow.done:
        cart.flow = None
        if flow.recorded:
            cart.cursor = 0
        else:
            cart.show()
        sys.modules.pop("menu_records", None)


def last_sale(ledger):
    """The seq of the ledger's newest sale among its last RECENT records, or
    None. Read from the ledger itself, a few records at a time from the
    checkpoint before them, so it holds after a restart and costs no scan of
    the whole log; a sale further back is voided with a `void` line."""
    found = None
    after = max(0, ledger.head - RECENT)
    while True:
        rows = ledger.pending(after, 8)
        if not rows:
            return found
        for seq, text in rows:
            after = seq
            if '"type":"sale"' in text and json.loads(text)["type"] == "sale":
                found = seq


class Void:
    """作废上一笔: the last sale named and asked to confirm; OK voids, NEXT keeps it."""

    def __init__(self, cart):
        self.terminal = cart.terminal
        self.seq = last_sale(self.terminal.ledger)
        self.done = self.recorded = False
        if self.seq is None:
            self.press("OK")        # the counter refuses it (sale_not_found), on the ledger's terms
        else:
            cart.display.show(["作废 Void #%d ?" % self.seq, "OK 确认 confirm", "NEXT 取消 cancel"])

    def scan(self, text):
        return False                # a label read meanwhile goes into the cart

    def press(self, button):
        self.done = True
        if button == "OK":
            self.recorded = True
            self.terminal.counter_record("VOIDED", self.terminal.counter.void, self.seq, "clerk_void")


class Return:
    """包装回收: labels scanned are containers (the same read twice is one)
    until OK takes them back from the card on the reader, or NEXT drops them.
    A return refused (no card, a bad code) keeps them for another tap."""

    def __init__(self, cart):
        self.terminal = cart.terminal
        self.display = cart.display
        self.codes = []
        self.done = self.recorded = False
        self.show()

    def scan(self, text):
        if text not in self.codes and len(self.codes) < RETURN_MAX:
            self.codes.append(text)
        self.show()
        return True

    def press(self, button):
        if button == "NEXT":
            self.done = True
        elif self.codes:
            self.display.show(["包装回收 Return %d" % len(self.codes), "请刷卡 Tap card"])
            t = self.terminal
            self.done = self.recorded = t.counter_record("RETURNED", t.counter.take_back, None, self.codes)

    def show(self):
        self.display.show(["包装回收 Return", "已扫 Scanned %d" % len(self.codes),
                           "OK 刷卡 Tap card" if self.codes else "请扫包装 Scan", "NEXT 取消 cancel"])
