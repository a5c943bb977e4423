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
returns at the menu"): 作废上一笔 voids the last sale, 包装回收 takes empty
containers back. Their steps are in menu_records.py, loaded only while one
is under way, and recorded by the counter's own `void` and `take_back`
through the terminal, as for a stdin line.
"""

MENU_MAX = 6
NAME_CHARS = 12    # what fits beside the cursor and the pack count on a 16-character line
ACTIONS = ("作废上一笔 Void last", "包装回收 Return")   # the entries after the products (menu_records.py)


class Cart:
    def __init__(self, display, menu=(), names=None, terminal=None):
        """`terminal`: given when the board has buttons, it puts the void and
        the return after the products in the menu, and records them."""
        self.display = display
        self.menu = list(menu)[:MENU_MAX]
        self.entries = self.menu + (list(ACTIONS) if terminal is not None else [])
        self._names = names or (lambda products: {})
        self.terminal = terminal
        self.cursor = 0
        self.items = []
        self.flow = None        # a void or a return under way (menu_records.py), else None
        self.prompt = None      # the last line instead of 请刷卡 while goods are chosen (main.py: lift the card)

    def scan(self, text):
        """A line from the label scanner: a container's code while a return
        is under way, else the cart's."""
        text = text.strip()
        if text and not (self.flow is not None and self.flow.scan(text)):
            self._add("code", text)

    def press(self, button):
        """A button: NEXT moves the menu's cursor, OK adds its product or
        opens its void or return."""
        if self.flow is not None or (button == "OK" and len(self.menu) <= self.cursor < len(self.entries)):
            import menu_records
            menu_records.press(self, button)
        elif not self.entries:
            return
        elif button == "NEXT":
            self.cursor = (self.cursor + 1) % len(self.entries)
            self.show()
        elif button == "OK":
            self._add("product", self.menu[self.cursor])

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
        self.prompt = None
        return items

    def show(self):
        """The OLED: the highlighted menu entry, then the cart's count."""
        lines = []
        if self.entries:
            if self.cursor < len(self.menu):
                product = self.menu[self.cursor]
                name = (self._names([product]).get(product) or product)[:NAME_CHARS]
            else:
                name = self.entries[self.cursor]
            lines.append("%d/%d %s" % (self.cursor + 1, len(self.entries), name))
        packs = 0
        for item in self.items:
            packs += item["packs"]
        lines.append("购物车 Cart %d" % packs)
        lines.append((self.prompt or "请刷卡 Tap card") if self.items else "扫码或选择 Scan/choose")
        self.display.show(lines)
