"""Ledger integrity: the gaps, chain breaks and conflicting records ingest
alerts on become violations, so they reach an inspector's queue instead of
sitting in a log. A deleted or rewritten ledger row is the strongest sign of
tampering the gateway can see."""

from __future__ import annotations

from gateway.supervision.rules import ALERT_CODES, Finding


def from_alerts(alerts: list[dict], shops: dict[str, str | None]) -> list[Finding]:
    """`alerts`: rows of the `alerts` table; one violation per alert."""
    out = []
    for a in alerts:
        if a["kind"] not in ALERT_CODES:
            continue
        out.append(Finding(a["kind"], f"alert:{a['id']}", None, shops.get(a["terminal"]), a["terminal"], a["seq"],
                           {"alert": a["id"], "seq_to": a.get("seq_to"), "detail": a.get("detail") or ""}))
    return out
