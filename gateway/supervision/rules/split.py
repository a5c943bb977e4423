"""Split purchases (smurfing): several purchases by one subject, or by the
members of one registry group, in a short window, each below the limit on its
own, that together pass it. A single big purchase is the quota's business, not
this rule's."""

from __future__ import annotations

from gateway.supervision.rules import Event, Finding


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


def split_purchase_group(event: Event, group: str | None, window: list[dict], cfg: dict) -> list[Finding]:
    """The same pattern spread over the members of one registry group (a
    household or cooperative buying on several cards): purchases by at least
    `min_subjects` members in `window_minutes`, each below the kind's limit,
    that together reach it. `window`: the group's sales in the window up to and
    including this one, each {"subject", "shop", "time", "amounts"}. Once per
    group, kind and day, naming every member and shop involved; the finding's
    subject is the member whose purchase completed the pattern."""
    c = cfg["split_group"]
    if event.type != "sale" or not event.subject or not group or len(window) < c["min_count"]:
        return []
    out = []
    for kind, limit in sorted(c["limits"].items()):
        bought = [w for w in window if w["amounts"].get(kind, 0) > 0]
        parts = [w["amounts"][kind] for w in bought]
        subjects = sorted({w["subject"] for w in bought if w.get("subject")})
        if (len(parts) < c["min_count"] or len(subjects) < c["min_subjects"] or sum(parts) < limit
                or max(parts) >= limit):
            continue
        out.append(Finding(
            "split_purchase_group", f"split_purchase_group:{group}:{kind}:{event.local_date}", event.subject,
            event.shop, event.terminal, event.seq,
            {"group": group, "kind": kind, "total": sum(parts), "limit": limit, "purchases": len(parts),
             "subjects": subjects, "shops": sorted({w["shop"] for w in bought if w.get("shop")}),
             "window_minutes": c["window_minutes"]}))
    return out
