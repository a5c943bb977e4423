"""What the gateway caught, against what was injected.

Each expectation of each injection (simulator/misuse.py) is matched against the
gateway's violations: same code (one of the listed), same subject and terminal
where the expectation names them. Per violation code: injected (expectations),
detected, missed, and false alarms (violations no expectation explains; one
offence raised twice is not a false alarm). Precision and recall are reported
for every code, and held to 1.0 only for the deterministic ones: top buyers and
a growing backlog are statistics of the whole run, not verdicts on one act.
"""

from __future__ import annotations

from simulator.misuse import Plan

STATISTICAL = frozenset({"top_buyer", "backlog_growing"})


def _matches(expect: dict, v: dict) -> bool:
    return (v["code"] in expect["code"]
            and (expect["subject"] is None or expect["subject"] == v["subject"])
            and (expect["terminal"] is None or expect["terminal"] == v["terminal"]))


def judge(plan: Plan, raised: list[dict]) -> tuple[dict, list[dict]]:
    """(detection per code, injections as report rows)."""
    detection: dict[str, dict] = {}

    def row(code: str) -> dict:
        return detection.setdefault(code, {"injected": 0, "detected": 0, "missed": 0, "false_alarms": 0,
                                           "raised": 0, "deterministic": code not in STATISTICAL})

    explained: set[int] = set()
    injections = []
    for inj in plan.injections:
        found_all = True
        for e in inj.expect:
            hits = [v for v in raised if _matches(e, v)]
            explained.update(v["id"] for v in hits)
            r = row(e["code"][0])
            r["injected"] += 1
            if hits:
                r["detected"] += 1
            else:
                r["missed"] += 1
                found_all = False
        injections.append({"kind": inj.kind, "at_ms": inj.at_ms, "until_ms": inj.until_ms, "shop": inj.shop,
                           "terminal": inj.terminal, "subject": inj.subject, "fault": inj.fault,
                           "expect": sorted({c for e in inj.expect for c in e["code"]}),
                           "detected": found_all if inj.expect else None, "note": inj.note})
    for v in raised:
        r = row(v["code"])
        r["raised"] += 1
        if v["id"] not in explained and r["deterministic"]:
            r["false_alarms"] += 1
    for r in detection.values():
        hits = r["detected"] + r["false_alarms"]
        r["precision"] = round(r["detected"] / hits, 4) if hits and r["deterministic"] else None
        r["recall"] = round(r["detected"] / r["injected"], 4) if r["injected"] else None
    return dict(sorted(detection.items())), injections
