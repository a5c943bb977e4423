"""The cart a clerk builds at a card-only terminal before the farmer taps:
label codes from the QR scanner on the second UART, and the shop's top
products from a short menu on the OLED, chosen with two buttons.

A board has no keyboard and no touchscreen, so these are the only ways to
name a product there (docs/mcu.md "Choosing the product"). A scan line is kept
as the scanner's text (`{"code": ..., "packs": 1}`): the counter resolves it
with protocols.labelcode when the sale is decided, as for a sale line, so a
bad code is refused on the ledger with its labelcode reason, not dropped here.
The menu lists `counter.menu` (the shop's top products, at most MENU_MAX: an
OLED shows four lines) with the names from the synced catalogue; NEXT moves
the cursor, OK puts one pack of the highlighted product into the cart. The
same product scanned or chosen again is one more pack.
"""

MENU_MAX = 6
NAME_CHARS = 12    # what fits beside the cursor and the pack count on a 16-character line


class Cart:
    def __init__(self, display, menu=(), names=None):
        self.display = display
        self.menu = list(menu)[:MENU_MAX]
        self._names = names or (lambda products: {})
        self.cursor = 0
        self.items = []

    def scan(self, text):
        """A line from the label scanner."""
        text = text.strip()
        if text:
            self._add("code", text)

    def press(self, button):
        """A button: NEXT moves the menu's cursor, OK adds its product."""
        if not self.menu:
            return
        if button == "NEXT":
            self.cursor = (self.cursor + 1) % len(self.menu)
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
        return items

    def show(self):
        """The OLED: the highlighted menu product, then the cart's count."""
        lines = []
        if self.menu:
            product = self.menu[self.cursor]
            name = self._names([product]).get(product) or product
            lines.append("%d/%d %s" % (self.cursor + 1, len(self.menu), name[:NAME_CHARS]))
        packs = 0
        for item in self.items:
            packs += item["packs"]
        lines.append("购物车 Cart %d" % packs)
        lines.append("请刷卡 Tap card" if self.items else "扫码或选择 Scan/choose")
        self.display.show(lines)
