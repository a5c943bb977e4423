"""The same card at two shops further apart than anyone could travel in the
time between: a copied card, or a card lent out to buy on someone else's quota."""

from __future__ import annotations

from gateway.store.grid import Shop
from gateway.supervision.grid import distance_km
from gateway.supervision.rules import Event, Finding


def card_travel(event: Event, shop: Shop | None, previous: tuple[Shop, int, str, int] | None,
                cfg: dict) -> list[Finding]:
    """`previous` = (shop, time ms, terminal, seq) of the card's last sale at another
    shop. Times are the terminals' clocks; the clock-skew rule watches those."""
    c = cfg["travel"]
    if event.type != "sale" or not event.card or previous is None or shop is None:
        return []
    other, when, terminal, seq = previous
    if other.id == shop.id or None in (shop.lat, shop.lon, other.lat, other.lon):
        return []
    km = distance_km(shop.lat, shop.lon, other.lat, other.lon)
    if km < c["min_km"]:
        return []
    hours = abs(event.time - when) / 3_600_000
    if hours > 0 and km / hours <= c["max_speed_kmh"]:
        return []
    return [Finding("card_travel_impossible", f"card_travel_impossible:{event.key()}", event.subject, event.shop,
                    event.terminal, event.seq,
                    {"card": event.card, "km": round(km, 1), "minutes": round(hours * 60, 1),
                     "other_shop": other.id, "other_terminal": terminal, "other_seq": seq})]
