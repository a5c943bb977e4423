"""The cart a clerk builds at a card-only terminal before the farmer taps:
label codes from the QR scanner on the second UART, and the shop's top
products from a short menu on the OLED, chosen with two buttons; and, at the
end of that menu, the counter's two other records: voiding the last sale and
taking empty containers back.

A board has no keyboard and no touchscreen, so these are the only ways to
name a product there (docs/mcu.md "Choosing the product"). A scan line is kept
as the scanner's text (`{"code": ..., "packs": 1}`): the counter resolves it
with protocols.labelcode when the sale is decided, as for a sale line, so a
bad code is refused on the ledger with its labelcode reason, not dropped here.
The menu lists `counter.menu` (the shop's top products, at most MENU_MAX: an
OLED shows four lines) with the names from the synced catalogue; NEXT moves
the cursor, OK puts one pack of the highlighted product into the cart. The
same product scanned or chosen again is one more pack.

With buttons, two entries follow the products (docs/mcu.md "Voids and
returns at the menu"): 作废上一笔 asks to confirm the void of this ledger's
last sale (OK voids, NEXT keeps it), 包装回收 collects the containers'
label codes from the scanner until OK (the farmer's card on the reader) or
NEXT (nothing taken back). `press` only says what is to be recorded,
`(VOID, seq)` or `(RETURN, codes)`; the terminal records it through the
counter's own `void` and `take_back`, as for a stdin line, so a button press
and a line make the same record on the same ledger.
"""

MENU_MAX = 6
NAME_CHARS = 12    # what fits beside the cursor and the pack count on a 16-character line
VOID = "void"
RETURN = "return"
RETURN_MAX = 50    # containers in one return: more than a farmer carries in, bounded for the heap
_ACTIONS = {VOID: "作废上一笔 Void last", RETURN: "包装回收 Return"}


class Cart:
    def __init__(self, display, menu=(), names=None, last_sale=None):
        """`last_sale`: the seq of the sale a void would take back, or None
        (`Counter.last_sale`); given when the board has buttons, it adds the
        void and the return to the menu."""
        self.display = display
        self.menu = list(menu)[:MENU_MAX]
        self.entries = self.menu + ([VOID, RETURN] if last_sale is not None else [])
        self._names = names or (lambda products: {})
        self._last_sale = last_sale
        self.cursor = 0
        self.items = []
        self.mode = None        # None: choosing; VOID: the void asked to confirm; RETURN: scanning containers
        self.void_seq = None
        self.returned = []      # the scanner's texts while RETURN

    def scan(self, text):
        """A line from the label scanner: a container's code while a return
        is being scanned (the same read twice is one container), else the cart's."""
        text = text.strip()
        if not text:
            return
        if self.mode == RETURN:
            if text not in self.returned and len(self.returned) < RETURN_MAX:
                self.returned.append(text)
            self.show()
            return
        self._add("code", text)

    def press(self, button):
        """A button: NEXT moves the menu's cursor, OK adds its product or opens
        its action. Returns what the terminal is to record now, else None."""
        if not self.entries:
            return None
        if self.mode == VOID:
            seq, self.mode, self.void_seq = self.void_seq, None, None
            if button == "OK":
                return VOID, seq
            self.show()
        elif self.mode == RETURN:
            if button == "OK" and self.returned:
                return RETURN, list(self.returned)
            if button == "NEXT":
                self.mode, self.returned = None, []
                self.show()
        elif button == "NEXT":
            self.cursor = (self.cursor + 1) % len(self.entries)
            self.show()
        elif button == "OK":
            entry = self.entries[self.cursor]
            if self.cursor < len(self.menu):    # a product (an id is never taken for an action)
                self._add("product", entry)
            elif entry == VOID:
                self.void_seq = self._last_sale()
                if self.void_seq is None:
                    return VOID, None       # the counter says there is no sale to void, on the ledger's terms
                self.mode = VOID
                self.show()
            else:
                self.mode, self.returned = RETURN, []
                self.show()
        return None

    def recorded(self, kind, done):
        """After the terminal recorded (or was refused) what `press` asked:
        a return taken back ends its scanning, one refused keeps the codes
        for another tap; the menu starts again at its first entry."""
        if kind == RETURN and done:
            self.mode, self.returned = None, []
        if self.mode is None:
            self.cursor = 0

    def _add(self, kind, value):
        for item in self.items:
            if item.get(kind) == value:
                item["packs"] += 1
                break
        else:
            self.items.append({kind: value, "packs": 1})
        self.show()

    def take(self):
        """The items for the sale the next tap makes; the cart is empty after."""
        items, self.items = self.items, []
        self.cursor = 0
        return items

    def show(self):
        """The OLED: the highlighted menu entry, then the cart's count; or the
        void's question, or the containers scanned for a return."""
        if self.mode == VOID:
            self.display.show(["作废 Void #%d ?" % self.void_seq, "OK 确认 confirm", "NEXT 取消 cancel"])
            return
        if self.mode == RETURN:
            self.display.show(["包装回收 Return", "已扫 Scanned %d" % len(self.returned),
                               "OK 刷卡 Tap card" if self.returned else "请扫包装 Scan", "NEXT 取消 cancel"])
            return
        lines = []
        if self.entries:
            entry = self.entries[self.cursor]
            if self.cursor < len(self.menu):
                name = (self._names([entry]).get(entry) or entry)[:NAME_CHARS]
            else:
                name = _ACTIONS[entry]
            lines.append("%d/%d %s" % (self.cursor + 1, len(self.entries), name))
        packs = 0
        for item in self.items:
            packs += item["packs"]
        lines.append("购物车 Cart %d" % packs)
        lines.append("请刷卡 Tap card" if self.items else "扫码或选择 Scan/choose")
        self.display.show(lines)
