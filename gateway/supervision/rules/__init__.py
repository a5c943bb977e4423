"""Violation rules: small pure functions, each with a stable code, that look at
one record (with the facts the engine gathered for it) or at the fleet on a
schedule, and return `Finding`s. They read no clock and no database: the engine
(`gateway.supervision.rules.engine`) gathers the inputs and reports what they return through
`gateway.store.violations.report`, so a rule is tested with plain values.

A finding's `dedup` key decides what counts as "the same offence": per record
for a banned sale, per shop and day for a high override rate, per subject and
day for split purchases (per group, kind and day when the purchases are spread
over a household's or cooperative's members), so one offence seen from many
records is raised once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.ingest import alerts as _ingest_alerts  # noqa: F401 - the alert kinds' texts
from protocols import reasons

CODES = reasons.register({
    "banned_product_sold": ("销售禁用农药", "banned pesticide sold"),
    "restricted_sold_not_designated": ("非定点门店销售限制使用农药", "restricted-use pesticide sold by a shop that is not designated"),
    "restricted_sold_no_permit": ("向无许可主体销售限制使用农药", "restricted-use pesticide sold to a subject without a permit"),
    "override_rate_high": ("店员代为确认身份（未实名）比例过高", "too many sales without real-name identity (clerk override)"),
    "face_check_missing": ("须刷脸核验的销售只刷了卡", "card used without the face check that was required"),
    "card_travel_impossible": ("同一张卡在相距过远的两店先后使用", "same card used at two shops further apart than travel time allows"),
    "split_purchase": ("短时间内多次小额购买，合计超限（拆单）", "several small purchases in a short window that add up past the limit (split purchase)"),
    "split_purchase_group": ("同一户/合作社多人短时间内多次小额购买，合计超限（拆单）",
                             "small purchases by several members of one household or cooperative in a short "
                             "window that add up past the limit (split purchase by a group)"),
    "top_buyer": ("本月用量占定额比例居前", "among the month's top buyers relative to allowance"),
    "terminal_silent": ("终端长时间无消息", "terminal silent for too long"),
    "clock_skew": ("终端时钟偏差过大", "terminal clock is off"),
    "backlog_growing": ("终端待上传记录持续增加", "terminal upload backlog keeps growing"),
    "sale_outside_hours": ("非营业时间销售", "sale outside opening hours"),
    "identity_unproven_offline": ("离线销售的身份未经核验（卡、人脸或代为确认原因不成立）",
                                  "offline sale whose identity is not proven (card, face match or override reason "
                                  "does not hold)"),
})

# Alerts raised by ingest become violations under their own codes (registered
# with the envelope codes in protocols.envelope, and in gateway.ingest): a
# terminal's ledger tampered with, and a terminal sending what no honest one
# sends (a forged far-off seq, a flood of junk, a message that kills a verifier).
ALERT_CODES = ("ledger_gap", "chain_break", "seq_conflict", "bad_mac",
               "seq_beyond_window", "quarantine_budget_exceeded", "verifier_crashed")


@dataclass(frozen=True)
class Finding:
    code: str
    dedup: str
    subject: str | None = None
    shop: str | None = None
    terminal: str | None = None
    seq: int | None = None
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """One stored record as the rules see it. `time` is the terminal's clock,
    `received` the gateway's; `local_*` are in the district's time zone."""
    terminal: str
    seq: int
    type: str
    time: int
    received: int
    body: dict
    shop: str | None
    local_date: str
    local_minute: int

    @property
    def subject(self) -> str | None:
        return self.body.get("subject")

    @property
    def card(self) -> str | None:
        return self.body.get("card")

    @property
    def identity(self) -> str | None:
        return self.body.get("identity")

    @property
    def items(self) -> list:
        return self.body.get("items") or []

    def key(self) -> str:
        return f"{self.terminal}:{self.seq}"


def local_parts(time_ms: int, tz_minutes: int) -> tuple[str, int]:
    """(YYYY-MM-DD, minute of day) of a UTC millisecond time in a fixed offset.
    China has one offset and no daylight saving, so a fixed offset is exact."""
    import datetime as _dt

    t = _dt.datetime.fromtimestamp(time_ms / 1000, _dt.timezone(_dt.timedelta(minutes=tz_minutes)))
    return t.strftime("%Y-%m-%d"), t.hour * 60 + t.minute


def make_event(terminal: str, seq: int, rtype: str, time_ms: int, received: int, body: dict,
               shop: str | None, tz_minutes: int) -> Event:
    date, minute = local_parts(time_ms, tz_minutes)
    return Event(terminal, seq, rtype, time_ms, received, body, shop, date, minute)
