"""Sales without real-name identity: a clerk "override" now and then is the
fallback for a broken reader; as routine it hides who bought what."""

from __future__ import annotations

from gateway.supervision.rules import Event, Finding


def override_rate(event: Event, sales: int, overrides: int, cfg: dict) -> list[Finding]:
    """`sales` and `overrides` count the shop's sales in the window ending at
    this one, this one included. Fires on an override sale when the share is
    above `max_ratio` and the shop sold at least `min_sales`; once per shop and day."""
    c = cfg["override"]
    if event.type != "sale" or event.identity != "override":
        return []
    if sales < c["min_sales"] or sales == 0 or overrides / sales <= c["max_ratio"]:
        return []
    return [Finding("override_rate_high", f"override_rate_high:{event.shop or event.terminal}:{event.local_date}",
                    None, event.shop, event.terminal, event.seq,
                    {"sales": sales, "overrides": overrides, "ratio": round(overrides / sales, 3),
                     "window_hours": c["window_hours"]})]
