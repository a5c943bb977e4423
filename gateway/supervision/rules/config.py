"""Rule thresholds, from TOML, validated at load: a bad value names the key and
the file. Every key has a default here, so a district file lists only what it
changes. The defaults are starting points a bureau tunes, with the reason for
each number next to it.

    [override]   max_ratio = 0.2  min_sales = 10  window_hours = 168
    [travel]     max_speed_kmh = 60  min_km = 5
    [split]      window_minutes = 120  min_count = 3  limits = { pesticide = 3000, fertilizer = 200000 }
    [split_group] window_minutes = 120  min_count = 3  min_subjects = 2
                 limits = { pesticide = 3000, fertilizer = 200000 }
    [top_buyers] count = 5  min_ratio = 0.8
    [silent]     minutes = 30
    [clock]      max_ahead_s = 300  max_back_s = 300
    [backlog]    min_backlog = 100  min_samples = 3
    [hours]      grace_minutes = 10
    [grid]       tz_minutes = 480
    [map]        tiles = ""   (a tile URL template with {z} {x} {y}; empty: no tiles, the default)
    [cases]      deadline_hours = { village = 72, town = 72, district = 168 }
                 confirm_outcomes = ["penalised"]  confirm_role = "town"
    [credit]     b_from = 1  c_from = 3  months = 12
    [proof]      missing = "legacy"
    [severity]   banned_product_sold = 1  ...  clock_skew = 4   (1 first, 4 last; any violation code)
    [queue]      watch = ["top_buyer", "terminal_silent", "clock_skew", "backlog_growing"]
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

from gateway.supervision.rules import ALERT_CODES, CODES

DEFAULTS: dict = {
    # 20% overrides over a week with at least 10 sales: a shop whose card reader
    # broke for a day stays below it; one that sells without cards as routine does not.
    "override": {"max_ratio": 0.2, "min_sales": 10, "window_hours": 168},
    # 60 km/h straight-line: rural roads make the real speed needed higher still;
    # under 5 km apart, neighbouring shops, a card lent in the family is not "travel".
    "travel": {"max_speed_kmh": 60.0, "min_km": 5.0},
    # Base units of product (g or mL summed by kind) within the window.
    "split": {"window_minutes": 120, "min_count": 3, "limits": {"pesticide": 3000, "fertilizer": 200000}},
    # The same pattern spread over the cards of one registry group (household,
    # cooperative): the same window and limits as for one subject, because the
    # offence is the same purchase split up, only across cards. At least two
    # members must take part, or it is the one-subject rule's case.
    "split_group": {"window_minutes": 120, "min_count": 3, "min_subjects": 2,
                    "limits": {"pesticide": 3000, "fertilizer": 200000}},
    "top_buyers": {"count": 5, "min_ratio": 0.8},
    # Terminals send a status on every (re)connect and records as they sell; half an
    # hour of nothing during opening hours means power, network or tampering.
    "silent": {"minutes": 30},
    "clock": {"max_ahead_s": 300, "max_back_s": 300},
    "backlog": {"min_backlog": 100, "min_samples": 3},
    "hours": {"grace_minutes": 10},
    "grid": {"tz_minutes": 480},
    # The dashboard's map draws the grid from its own coordinates (government
    # networks often have no internet); a deployment with a tile server of its
    # own names its URL template here, e.g. "https://tiles.example.gov.cn/{z}/{x}/{y}.png".
    "map": {"tiles": ""},
    # Two-person rule: closing a case with one of `confirm_outcomes` changes the
    # subject's credit grade at every counter, so it only proposes the close;
    # a second person of `confirm_role` or above, in the case's area, confirms
    # it (gateway/supervision/cases.py). "penalised" by default; a district that wants
    # the same for "confirmed" (which also lowers the grade) adds it here.
    "cases": {"deadline_hours": {"village": 72, "town": 72, "district": 168},
              "confirm_outcomes": ["penalised"], "confirm_role": "town"},
    "credit": {"b_from": 1, "c_from": 3, "months": 12},
    # An offline sale's identity proof (gateway/supervision/rules/proof.py): "legacy" checks
    # only records that carry the `proof` field (a record without it was written
    # before the field existed: checking it would flood the queue with every
    # offline card sale of a terminal not yet updated); "unproven" checks a sale
    # without it too, for a district whose terminals all write it.
    "proof": {"missing": "legacy"},
    # The inspection queue's order (1 first, 4 last), then the deadline. 1: a
    # banned or restricted product left the shop, or someone bought as
    # somebody else: harm done at the counter that an inspector can still
    # stop. 2: the ledger itself lies, or a purchase was split to stay under
    # a limit. 3: patterns worth a visit. 4: rankings and fleet health, for
    # the office, not the field. A code not named here is 3.
    "severity": {
        "banned_product_sold": 1, "restricted_sold_not_designated": 1, "restricted_sold_no_permit": 1,
        "card_travel_impossible": 1, "identity_unproven_offline": 1, "face_check_missing": 1, "auth_reused": 1,
        "ledger_gap": 2, "chain_break": 2, "seq_conflict": 2, "bad_mac": 2, "seq_beyond_window": 2,
        "split_purchase": 2, "split_purchase_group": 2, "over_quota": 2,
        "override_rate_high": 3, "sale_outside_hours": 3, "quarantine_budget_exceeded": 3, "verifier_crashed": 3,
        "quota_apply_failed": 3,
        "top_buyer": 4, "terminal_silent": 4, "clock_skew": 4, "backlog_growing": 4,
    },
    # Findings on the watch list instead of the inspection queue: a monthly
    # ranking is not an offence, and a terminal's health is the fleet
    # operator's job, not an inspector's trip (issue 18: 23 of 38 cases at
    # the end of a demo season were rankings). A district that wants them
    # inspected lists fewer codes here.
    "queue": {"watch": ["backlog_growing", "clock_skew", "terminal_silent", "top_buyer"]},
}

# Every code a violation may carry: the rules', ingest's alerts, and the quota
# ledger's (gateway/enforcement/quota.py, named here because rules sit below it).
QUOTA_CODES = ("auth_reused", "over_quota", "quota_apply_failed")
VIOLATION_CODES = tuple(sorted(set(CODES) | set(ALERT_CODES) | set(QUOTA_CODES)))
DEFAULT_SEVERITY = 3


# The values a text or list key may take (keys not named here take numbers).
CHOICES = {"cases.confirm_outcomes": ("confirmed", "dismissed", "penalised"),
           "cases.confirm_role": ("village", "town", "district"),
           "proof.missing": ("legacy", "unproven"),
           "queue.watch": VIOLATION_CODES}


class ConfigError(ValueError):
    pass


def _merge(base: dict, extra: dict, source: str, path: str = "") -> None:
    for key, value in extra.items():
        where = f"{path}{key}"
        if key not in base:
            raise ConfigError(f"{source}: unknown key {where}")
        old = base[key]
        if isinstance(old, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {where} must be a table")
            if where in ("split.limits", "split_group.limits"):
                for k, v in value.items():
                    if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
                        raise ConfigError(f"{source}: {where}.{k} must be a positive integer")
                base[key] = dict(value)
                continue
            if where == "severity":
                for k, v in value.items():
                    if k not in VIOLATION_CODES:
                        raise ConfigError(f"{source}: unknown violation code severity.{k}")
                    if not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4):
                        raise ConfigError(f"{source}: severity.{k} must be 1, 2, 3 or 4, got {v!r}")
                    old[k] = v
                continue
            _merge(old, value, source, where + ".")
            continue
        if where == "map.tiles":
            if not isinstance(value, str) or (value and not (value.startswith(("http://", "https://"))
                                                             and all(k in value for k in ("{z}", "{x}", "{y}")))):
                raise ConfigError(f"{source}: {where} must be an http(s) URL template with {{z}}, {{x}} and {{y}}, "
                                  f"or empty, got {value!r}")
            base[key] = value
            continue
        if isinstance(old, (list, str)):
            allowed = CHOICES[where]
            if isinstance(old, list):
                if not isinstance(value, list) or any(v not in allowed for v in value):
                    raise ConfigError(f"{source}: {where} must be a list of {', '.join(allowed)}, got {value!r}")
                base[key] = sorted(set(value))
            else:
                if value not in allowed:
                    raise ConfigError(f"{source}: {where} must be one of {', '.join(allowed)}, got {value!r}")
                base[key] = value
            continue
        if isinstance(old, bool) or not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{source}: {where} must be a number, got {value!r}")
        if isinstance(old, int) and not isinstance(value, int):
            raise ConfigError(f"{source}: {where} must be an integer, got {value!r}")
        if value < 0 and where != "grid.tz_minutes":
            raise ConfigError(f"{source}: {where} must not be negative")
        base[key] = value


def load(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Defaults, then the file, then `overrides` (tests); raises ConfigError."""
    cfg = copy.deepcopy(DEFAULTS)
    if path:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except OSError as err:
            raise ConfigError(f"cannot read {path}: {err.strerror}") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: {err}") from None
        _merge(cfg, data, str(path))
    if overrides:
        _merge(cfg, overrides, "overrides")
    return cfg
