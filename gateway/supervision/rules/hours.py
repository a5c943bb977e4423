"""Sales outside the shop's registered opening hours: a ledger filled in after
closing, or a counter selling off the books at night."""

from __future__ import annotations

from gateway.store.grid import Shop
from gateway.supervision.grid import parse_hours
from gateway.supervision.rules import Event, Finding


def outside_hours(event: Event, shop: Shop | None, cfg: dict) -> list[Finding]:
    if event.type != "sale" or shop is None or not shop.hours:
        return []
    grace = cfg["hours"]["grace_minutes"]
    minute = event.local_minute
    for start, end in parse_hours(shop.hours):
        if start - grace <= minute < end + grace:
            return []
    return [Finding("sale_outside_hours", f"sale_outside_hours:{event.key()}", event.subject, event.shop,
                    event.terminal, event.seq,
                    {"local_time": "%02d:%02d" % divmod(minute, 60), "hours": shop.hours})]
