"""Rules on what was sold: banned products, restricted-use products outside
their conditions, and the face check restricted products require.

The terminal runs the same policy and should have refused all of these; when
one is in the ledger anyway, the terminal was offline with stale data, was
misconfigured, or was tampered with, and an inspector has to look. Statuses are
evaluated on the sale's own date (`catalogue.status_on`), so a product banned
after the sale is not held against the shop.
"""

from __future__ import annotations

from gateway.store.grid import Shop
from gateway.supervision.rules import Event, Finding
from protocols import catalogue as _catalogue

# (item, product entry or None, status dict or None), one per cart line
ItemState = tuple


def item_states(cat: dict, event: Event) -> list[ItemState]:
    out = []
    for item in event.items:
        prod = cat.get("products", {}).get(item.get("product"))
        state = _catalogue.status_on(cat, prod, event.local_date) if prod else None
        out.append((item, prod, state))
    return out


def _approved(item: dict) -> bool:
    return item.get("decision", "approve") == "approve"


def _sold(event: Event, states: list[ItemState], status: str) -> list[tuple[int, dict, dict]]:
    if event.type != "sale":
        return []
    return [(i, item, state) for i, (item, prod, state) in enumerate(states)
            if state and state["status"] == status and _approved(item)]


def banned_product(event: Event, states: list[ItemState]) -> list[Finding]:
    lines = _sold(event, states, _catalogue.BANNED)
    if not lines:
        return []
    return [Finding("banned_product_sold", f"banned_product_sold:{event.key()}", event.subject, event.shop,
                    event.terminal, event.seq,
                    {"products": [item["product"] for _, item, _ in lines], "lines": [i for i, _, _ in lines]})]


def restricted_not_designated(event: Event, states: list[ItemState], shop: Shop | None) -> list[Finding]:
    """A shop missing from the registry counts as not designated: the designated
    list *is* the registry."""
    if shop is not None and shop.designated:
        return []
    lines = [(i, item) for i, item, state in _sold(event, states, _catalogue.RESTRICTED) if state["designated"]]
    if not lines:
        return []
    return [Finding("restricted_sold_not_designated", f"restricted_sold_not_designated:{event.key()}",
                    event.subject, event.shop, event.terminal, event.seq,
                    {"products": [item["product"] for _, item in lines], "shop_registered": shop is not None})]


def permit_covers(subject: dict, ingredients: list[str], date: str) -> bool:
    for permit in subject.get("permits") or []:
        if not isinstance(permit, dict):
            continue
        scope = permit.get("ingredients") or []
        if "*" not in scope and any(name not in scope for name in ingredients):
            continue
        until = permit.get("until")
        if until is not None and until < date:
            continue
        return True
    return False


def restricted_no_permit(event: Event, states: list[ItemState], subject: dict | None,
                         registry_known: bool) -> list[Finding]:
    """`subject` is the registry entry (None: not in the registry). Without a
    registry at all (`registry_known` False) nothing can be said, so nothing fires."""
    if not registry_known:
        return []
    missing = []
    for _, item, state in _sold(event, states, _catalogue.RESTRICTED):
        if subject is None or not permit_covers(subject, state["restricted"], event.local_date):
            missing.append(item["product"])
    if not missing:
        return []
    return [Finding("restricted_sold_no_permit", f"restricted_sold_no_permit:{event.key()}", event.subject,
                    event.shop, event.terminal, event.seq,
                    {"products": missing, "subject_registered": subject is not None})]


def face_missing(event: Event, states: list[ItemState], required_identity: str) -> list[Finding]:
    """Restricted products need card *and* face where the district says so
    (policy param `restricted_identity`); a sale that went through without the
    face is the finding."""
    if "face" not in required_identity:
        return []
    if event.identity in ("face", "card+face"):
        return []
    lines = _sold(event, states, _catalogue.RESTRICTED)
    if not lines:
        return []
    return [Finding("face_check_missing", f"face_check_missing:{event.key()}", event.subject, event.shop,
                    event.terminal, event.seq,
                    {"identity": event.identity, "card": event.card,
                     "products": [item["product"] for _, item, _ in lines]})]
