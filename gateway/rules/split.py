"""Split purchases (smurfing): several purchases by one subject in a short
window, each below the limit on its own, that together pass it. A single big
purchase is the quota's business, not this rule's."""

from __future__ import annotations

from gateway.rules import Event, Finding


def split_purchase(event: Event, window: list[dict], cfg: dict) -> list[Finding]:
    """`window`: the subject's sales in the `window_minutes` before and including
    this one, each {"shop", "time", "amounts": {kind: base units}}. Once per
    subject, kind and day."""
    c = cfg["split"]
    if event.type != "sale" or not event.subject or len(window) < c["min_count"]:
        return []
    out = []
    for kind, limit in sorted(c["limits"].items()):
        parts = [w["amounts"].get(kind, 0) for w in window]
        total = sum(parts)
        if total >= limit and max(parts) < limit and sum(1 for p in parts if p) >= c["min_count"]:
            out.append(Finding(
                "split_purchase", f"split_purchase:{event.subject}:{kind}:{event.local_date}", event.subject,
                event.shop, event.terminal, event.seq,
                {"kind": kind, "total": total, "limit": limit, "purchases": sum(1 for p in parts if p),
                 "shops": sorted({w["shop"] for w in window if w.get("shop")}),
                 "window_minutes": c["window_minutes"]}))
    return out
