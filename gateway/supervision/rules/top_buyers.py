"""Top buyers per district per month relative to their allowance: not an
offence by itself, but where resale and hoarding show first, so the district
gets a short list to look at each month."""

from __future__ import annotations

from gateway.supervision.rules import Finding


def top_buyers(month: str, usage: list[dict], cfg: dict) -> list[Finding]:
    """`usage`: {"subject", "district", "used", "allowance", "category"} rows, one
    per subject and category; a subject's ratio is its highest over categories.
    The `count` highest ratios at or above `min_ratio` per district fire."""
    c = cfg["top_buyers"]
    best: dict[tuple[str, str], dict] = {}
    for row in usage:
        if not row.get("allowance") or row["allowance"] <= 0:
            continue
        ratio = row["used"] / row["allowance"]
        key = (row.get("district") or "", row["subject"])
        if key not in best or ratio > best[key]["ratio"]:
            best[key] = {**row, "ratio": ratio}
    out = []
    for district in sorted({d for d, _ in best}):
        ranked = sorted((r for (d, _), r in best.items() if d == district),
                        key=lambda r: (-r["ratio"], r["subject"]))
        for rank, r in enumerate([r for r in ranked if r["ratio"] >= c["min_ratio"]][:c["count"]], 1):
            out.append(Finding("top_buyer", f"top_buyer:{month}:{r['subject']}", r["subject"], r.get("shop"), None,
                               None, {"month": month, "rank": rank, "district": district,
                                      "category": r.get("category"), "used": r["used"],
                                      "allowance": r["allowance"], "ratio": round(r["ratio"], 3)}))
    return out
