"""What a card tapped with nothing chosen shows (docs/mcu.md "A sale at the
counter"): that the goods come first, and what the buyer may still buy.

In a village shop the farmer often lays the card down on arrival. Nothing is
sold and nothing recorded (no goods, no sale attempt); the clerk sees

    先选货 Choose goods
    余 N 150 kg
    余 NPK 250 kg
    余 Pest 3 kg 4 L

the remaining quota of the categories the policy enforces on this buyer (a
restricted ingredient only under a permit, as the kiosk's panel), as this
terminal knows it: the gateway's last figures plus its own sales since
(`Counter.used`, the offline decision's own). The board's ASCII font shows
the English half. A card the counter does not accept shows its reason, as a
refused void or return does. The farmer lifts the card and taps again once
the goods are chosen (tap.py: a card left lying does not buy).

Apart from main.py so that it is in the heap only while it shows: main.py
imports it for such a tap and lets go of it after (tests/test_mcu_memory.py).
"""

import sys

from protocols import display, policy
from protocols.card import CardRejected

CHOOSE = "先选货 Choose goods"
UNKNOWN = "余额未知 Quota unknown"
LABELS = {"fert_n": "N", "fert_total": "NPK", "fert_k2o": "K2O", "pesticide_g": "Pest", "pesticide_ml": "Pest"}
ORDER = ("fert_n", "fert_total", "pesticide_g", "pesticide_ml")   # what a village shop sells most, first
LINES = 3          # under CHOOSE, on a four-line OLED
WIDTH = 16


def show(counter):
    try:
        try:
            found, _, _ = counter._tap(None)
        except CardRejected as err:
            counter._not_done(err.code)
            return
        counter.board.display.show([CHOOSE] + (quota_lines(counter, found.subject_id) or [UNKNOWN]))
    finally:
        _forget_display()


def _forget_display():
    """protocols.display out of the heap again with this module (tapped.py
    lets go of this one): nothing else on the terminal uses it."""
    import protocols
    sys.modules.pop("protocols.display", None)
    try:
        delattr(protocols, "display")
    except AttributeError:
        pass


def quota_lines(counter, subject_id):
    """Up to LINES lines "余 <label> <remaining>", categories with the same
    label on one line ("Pest 3 kg 4 L"); [] when the terminal has no
    figures for this buyer."""
    params = counter.store.section("params")
    subject = counter.subject(subject_id)
    if params is None or subject is None:
        return []
    date = counter.today()
    try:
        balance = policy.balance(subject, counter.used(subject_id, params), params, date)
    except policy.PolicyError:
        return []
    names = [c for c in ORDER if c in balance] + sorted([c for c in balance if c not in ORDER])
    shown = {}
    labels = []
    for category in names:
        b = balance[category]
        if not b["enforced"] or b["allowance"] <= 0 or not _may_buy(subject, params, category, date):
            continue
        label = LABELS.get(category) or category[:8]
        amount = display.amount_text(max(0, b["remaining"]), display.category_unit(category, params))
        if label not in shown:
            labels.append(label)
            shown[label] = label
        shown[label] += " " + amount
    return ["余 " + shown[label][:WIDTH] for label in labels[:LINES]]


def _may_buy(subject, params, category, date):
    """A category counted by restricted ingredient means something only to a
    buyer with a permit for it (terminal_ui/views.py's rule, the policy's test)."""
    spec = params["categories"].get(category) or {}
    if spec.get("basis") != "ingredient":
        return True
    return policy._permit_reason(subject, spec.get("ingredients") or [], date) is None
