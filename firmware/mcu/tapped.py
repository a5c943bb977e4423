"""What a card on the reader does (docs/mcu.md "A sale at the counter"), once
tap.py has seen that it calls for something:

- a card just laid there, with goods chosen: the sale of the cart, through
  the terminal's `_sell`, the very path of a sale line (counter.sell, the
  ledger commit, the OLED result, buzzer and LED, `APPROVED <seq>` /
  `REFUSED <reason>` on stdout, then the uplink). A card the reader saw come
  but could not read (lifted too soon: `card_not_presented`,
  `card_reader_error`) is refused on the ledger as for a line, and the goods
  stay in the cart for the next tap ("请再刷卡 Tap again"), since the
  refusal tells the farmer to tap again;
- a card just laid there, with nothing chosen: quota_screen.py;
- the card that bought still lying there while new goods are chosen: the
  cart asks for it to be lifted ("移开卡再刷 Lift, tap again"), since it will
  not buy them; once lifted, the cart asks for the tap again.

Apart from tap.py so that the resident part of the tap is the look at the
reader only: this is in the heap while it acts (tests/test_mcu_memory.py).
"""

import sys

LIFT = "移开卡再刷 Lift, tap again"
AGAIN = "请再刷卡 Tap again"
UNREAD = ("card_not_presented", "card_reader_error")


def act(tap, terminal, target, new):
    cart = terminal.cart
    if target is None or not new:
        tap.lifting = target is not None
        if cart.prompt == LIFT or tap.lifting:
            cart.prompt = LIFT if tap.lifting else None
            cart.show()
    elif cart.items:
        items = cart.take()
        tap.lifting = False
        done = terminal._sell(target.uid, items, None)
        if done is not None and not done[0] and done[1] in UNREAD:
            cart.items = items
            cart.prompt = AGAIN
            cart.show()
    else:
        import quota_screen
        try:
            quota_screen.show(terminal.counter)
        finally:
            sys.modules.pop("quota_screen", None)
