"""Terminal health rules: silent too long, clock off, backlog growing. Each of
these is how tampering usually starts (unplug the uplink, wind the clock back,
sell offline and never upload), and each is also an honest fault a technician
must fix, so they open cases like any other finding."""

from __future__ import annotations

from gateway.supervision.rules import Event, Finding


def terminal_silent(now: int, terminals: list[dict], cfg: dict) -> list[Finding]:
    """`terminals`: {"id", "shop", "last_seen"}; once per silence (keyed by last_seen)."""
    limit = cfg["silent"]["minutes"] * 60_000
    out = []
    for t in terminals:
        seen = t.get("last_seen")
        if seen is None or now - seen <= limit:
            continue
        out.append(Finding("terminal_silent", f"terminal_silent:{t['id']}:{seen}", None, t.get("shop"), t["id"],
                           None, {"last_seen": seen, "silent_minutes": (now - seen) // 60_000}))
    return out


def clock_skew(event: Event, previous_time: int | None, cfg: dict) -> list[Finding]:
    """Ahead: a record stamped later than it arrived. Back: a record stamped
    earlier than the one before it in the same ledger (sequence order is the
    truth). Records sent late after an outage are neither, so offline sales do
    not trip it. Once per terminal and hour of arrival."""
    c = cfg["clock"]
    ahead = event.time - event.received
    detail = None
    if ahead > c["max_ahead_s"] * 1000:
        detail = {"direction": "ahead", "seconds": ahead // 1000}
    elif previous_time is not None and previous_time - event.time > c["max_back_s"] * 1000:
        detail = {"direction": "back", "seconds": (previous_time - event.time) // 1000}
    if detail is None:
        return []
    detail["record_time"] = event.time
    detail["received"] = event.received
    return [Finding("clock_skew", f"clock_skew:{event.terminal}:{event.received // 3_600_000}", None, event.shop,
                    event.terminal, event.seq, detail)]


def backlog_growing(samples: dict[str, list[tuple[int, int]]], shops: dict[str, str | None],
                    cfg: dict) -> list[Finding]:
    """`samples`: terminal -> [(time, backlog)] oldest first. Fires when the last
    `min_samples` samples rise strictly and end at or above `min_backlog`; once
    per terminal and hour of the last sample."""
    c = cfg["backlog"]
    n = max(2, c["min_samples"])
    out = []
    for terminal, series in sorted(samples.items()):
        tail = series[-n:]
        if len(tail) < n or tail[-1][1] < c["min_backlog"]:
            continue
        if all(b[1] > a[1] for a, b in zip(tail, tail[1:])):
            out.append(Finding("backlog_growing", f"backlog_growing:{terminal}:{tail[-1][0] // 3_600_000}", None,
                               shops.get(terminal), terminal, None,
                               {"backlog": [b for _, b in tail], "since": tail[0][0]}))
    return out
