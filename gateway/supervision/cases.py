"""Cases: the closed loop on the grid. Each violation opens a case, or joins
the open case of the same shop and subject, so an inspector visits once for
everything wrong at that counter; the case is pushed to the grid inspector of
the shop's village (else its town, else the district), escalates up the grid
when its deadline passes, and closes only after an on-site inspection.

    open -> assigned -> inspected -> closed (confirmed | dismissed | penalised)

Two-person rule: an outcome listed in the rules' `cases.confirm_outcomes`
(default: penalised) lowers the subject's credit grade at every counter, so
one person cannot close with it alone. `close` with such an outcome records a
proposal (`case_proposals`, event `close_proposed`; the case stays
inspected); `confirm` by another user of `cases.confirm_role` or above
(default: town) in the case's area closes it, or rejects the proposal
(`close_rejected`; the proposer may also withdraw it that way).

Notes are shown to other users, exported and forwarded upstream: characters
that change how text around them reads without being seen (direction
overrides and isolates, zero-width characters, other format characters,
controls) are refused (`case_notes_hidden_characters`), not stripped.

Every change writes a `case_events` row (who, when, from, to, detail) in the
same transaction as the change: the timeline is the audit. A subject's
confirmed or penalised cases set its credit grade (A/B/C); the grades below A
are kept in `credit_grades` for the terminals' `subjects` section
(gateway/enforcement/quota.py `terminal_entries`), and a change bumps that section's
version, so the shop counters show it without a restart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import unicodedata
from pathlib import Path


from gateway.store import cases as case_store, fleet, grid, upstream_outbox, users, violations, watermarks
from gateway.store import registry as registry_store
from gateway.store import private_directory
# the API reads one case, its timeline and its pending close from here (gateway/api)
from gateway.store.cases import COLUMNS as CASE_COLUMNS, get, proposal, timeline  # noqa: F401
from gateway.store.users import LEVEL_RANK, User
from protocols.reasons import ReasonError, register

log = logging.getLogger(__name__)

STATES = ("open", "assigned", "inspected", "closed")
RESULTS = ("violation_found", "no_violation_found", "rectified_on_site")
OUTCOMES = ("confirmed", "dismissed", "penalised")
COUNTS_AGAINST = ("confirmed", "penalised")
PHOTO_TYPES = {b"\xff\xd8\xff": ("image/jpeg", "jpg"), b"\x89PNG\r\n\x1a\n": ("image/png", "png")}
MAX_PHOTO_BYTES = 5 * 1024 * 1024  # a phone photo of a shelf, re-encoded by the browser or not
MAX_NOTES = 2000

register({
    "case_not_found": ("案件不存在或不在您的辖区", "case not found or not in your area"),
    "case_bad_transition": ("案件当前状态不允许此操作", "the case's state does not allow this"),
    "case_not_your_level": ("案件已升级，本级不能处理", "the case is held above your level"),
    "case_bad_input": ("输入内容不符合要求", "the input is not acceptable"),
    "case_assignee_unknown": ("被指派人不存在或不负责该辖区", "assignee unknown or not responsible for this area"),
    "photo_not_image": ("照片须为 JPEG 或 PNG 文件", "a photo must be a JPEG or PNG file"),
    "photo_size": ("照片大小须在 5 MB 以内", "a photo must be at most 5 MB"),
    "case_notes_hidden_characters": ("备注含有不可见或改变文字方向的字符，请删除后重试",
                                     "the notes contain invisible or text-direction characters; remove them"),
    "case_no_proposal": ("该案件没有待确认的结案", "the case has no close awaiting confirmation"),
    "case_proposal_changed": ("待确认的结案已变更，请刷新后重试", "the proposed close changed; reload and try again"),
    "case_confirm_self": ("须由另一人确认结案", "another person must confirm this close"),
    "case_confirm_role": ("确认此结案需要更高一级的人员", "confirming this close needs a higher role"),
})


class CaseError(ReasonError):
    pass


def _holder(conn, shop: grid.Shop | None, start: str = "village") -> tuple[str, str | None]:
    """(level, inspector) from `start` upwards: the first level of the shop's grid
    that has an inspector; the district holds it when nobody below does."""
    for level in ("village", "town"):
        if LEVEL_RANK[level] < LEVEL_RANK[start] or shop is None:
            continue
        name = users.inspector_for(conn, level, getattr(shop, level))
        if name:
            return level, name
    district = shop.district if shop else None
    return "district", users.inspector_for(conn, "district", district) if district else None


def _deadline(cfg: dict, level: str, now: int) -> int:
    return now + int(cfg["cases"]["deadline_hours"][level] * 3_600_000)


def file_violation(conn, now: int, cfg: dict, v: dict) -> int:
    """Open or join the case for a violation row; returns the case id. Inside the caller's transaction."""
    shop_id = v.get("shop")
    if not shop_id and v.get("terminal"):
        shop_id = fleet.terminal_shop(conn, v["terminal"])
    shop = grid.shop(conn, shop_id)
    subject = v.get("subject")
    found = case_store.open_case_of(conn, shop_id, subject)
    if found:
        case_id, codes = found
        codes_ = sorted(set(filter(None, codes.split(","))) | {v["code"]})
        case_store.add_violation(conn, case_id, ",".join(codes_), now)
        case_store.add_event(conn, case_id, now, "system", "joined", None, None,
                             {"violation": v["id"], "code": v["code"]})
    else:
        level, inspector = _holder(conn, shop)
        case_id = case_store.insert(conn, now, shop_id, subject, v.get("terminal"), shop.village if shop else None,
                                    shop.town if shop else None, shop.district if shop else None, level,
                                    _deadline(cfg, level, now), v["code"])
        case_store.add_event(conn, case_id, now, "system", "opened", None, "open",
                             {"violation": v["id"], "code": v["code"], "level": level})
        if inspector:
            case_store.assign(conn, case_id, inspector, now)  # `updated` is `now` already: it just opened
            case_store.add_event(conn, case_id, now, "system", "assigned", "open", "assigned",
                                 {"assignee": inspector, "level": level})
    case_store.link_violation(conn, v["id"], case_id)
    return case_id


def file_new_violations(conn, now: int, cfg: dict, limit: int = 1000) -> int:
    """Every violation not yet in a case gets one, except those on the watch
    list (`[queue] watch`: top-buyer rankings and fleet health by default):
    they are for the office to follow, not for a site visit, so they open no
    case and join none; the rules file sends a code to inspectors by leaving
    it off the list. The watermark moves in the same transaction, so each
    violation is considered exactly once, and no violation whose id was
    handed out is still uncommitted when it moves
    (gateway/store/violations.py, `wait_for_writers`)."""
    violations.wait_for_writers(conn)
    rows = violations.after(conn, watermarks.get(conn, "cases"), limit)
    watch = set(cfg.get("queue", {}).get("watch") or ())
    for v in rows:
        if v["code"] not in watch:
            file_violation(conn, now, cfg, v)
    if rows:
        watermarks.move(conn, "cases", rows[-1]["id"])
    return len(rows)


def escalate_due(conn, now: int, cfg: dict) -> int:
    """Cases not inspected by their deadline move one level up the grid."""
    n = 0
    for case_id in case_store.past_deadline_below_district(conn, now):
        case = get(conn, case_id)
        up = "town" if case["level"] == "village" else "district"
        shop = grid.shop(conn, case["shop"])
        level, inspector = _holder(conn, shop, start=up)
        state = "assigned" if inspector else "open"
        case_store.move_level(conn, case_id, now, level, inspector, state, _deadline(cfg, level, now))
        case_store.add_event(conn, case_id, now, "system", "escalated", case["state"], state,
                             {"from_level": case["level"], "level": level, "assignee": inspector})
        n += 1
    return n


# -- user actions: each checks area, level and state, then changes and audits

def _for_action(conn, user: User, case_id: int, states: tuple[str, ...]) -> dict:
    case = get(conn, case_id)
    if case is None or not user.scope().covers(case):
        raise CaseError("case_not_found", str(case_id))
    if LEVEL_RANK[user.role] < LEVEL_RANK[case["level"]]:
        raise CaseError("case_not_your_level", f"case {case_id} is held at {case['level']}")
    if case["state"] not in states:
        raise CaseError("case_bad_transition", f"case {case_id} is {case['state']}")
    return case


# controls, format (bidi, zero-width), surrogates, private use, line and paragraph separators
HIDDEN_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Zl", "Zp")
ALLOWED_CONTROLS = "\t\n\r"


def hidden_character(text: str) -> str | None:
    """A description of the first character in `text` that is invisible or
    changes how the text around it reads (U+202A-U+202E and U+2066-U+2069
    bidirectional overrides and isolates, U+200B-U+200F zero-width characters
    and marks, U+FEFF, U+2060-U+2064, soft hyphen, tag characters, controls,
    U+2028/U+2029), or None. Such a character in a note can make a
    "no violation" read as a "violation" on a supervisor's screen."""
    for at, ch in enumerate(text):
        if ch in ALLOWED_CONTROLS:
            continue
        category = unicodedata.category(ch)
        if category in HIDDEN_CATEGORIES:
            name = unicodedata.name(ch, {"Cc": "control character", "Cs": "surrogate",
                                         "Co": "private use character"}.get(category, "unnamed character"))
            return f"U+{ord(ch):04X} {name} at position {at}"
    return None


def _notes(notes) -> str:
    if notes is None:
        return ""
    if not isinstance(notes, str) or len(notes) > MAX_NOTES:
        raise CaseError("case_bad_input", f"notes must be text of at most {MAX_NOTES} characters")
    found = hidden_character(notes)
    if found:
        raise CaseError("case_notes_hidden_characters", f"notes: {found}")
    return notes


def assign(conn, now: int, user: User, case_id: int, assignee: str, notes: str | None = None) -> dict:
    text = _notes(notes)   # checked before anything changes (the caller may not roll back)
    case = _for_action(conn, user, case_id, ("open", "assigned"))
    target = users.user_by_name(conn, assignee) if isinstance(assignee, str) else None
    if target is None or not target.scope().covers(case):
        raise CaseError("case_assignee_unknown", str(assignee)[:64])
    case_store.assign(conn, case_id, target.name, now)
    case_store.add_event(conn, case_id, now, user.name, "assigned", case["state"], "assigned",
                         {"assignee": target.name, "notes": text})
    return get(conn, case_id)


def inspect(conn, now: int, user: User, case_id: int, result: str, notes: str | None = None) -> dict:
    if result not in RESULTS:
        raise CaseError("case_bad_input", f"result must be one of {', '.join(RESULTS)}")
    text = _notes(notes)
    case = _for_action(conn, user, case_id, ("open", "assigned"))
    case_store.set_inspected(conn, case_id, result, now)
    case_store.add_event(conn, case_id, now, user.name, "inspected", case["state"], "inspected",
                         {"result": result, "notes": text})
    return get(conn, case_id)


def add_photo(conn, now: int, user: User, case_id: int, data: bytes, photos_dir: Path) -> int:
    """A photo of the shelf or the paper ledger, kept as a file named by its hash."""
    case = _for_action(conn, user, case_id, ("open", "assigned", "inspected"))
    if not data or len(data) > MAX_PHOTO_BYTES:
        raise CaseError("photo_size", f"a photo must be 1 byte to {MAX_PHOTO_BYTES} bytes")
    kind = next((v for magic, v in PHOTO_TYPES.items() if data.startswith(magic)), None)
    if kind is None:
        raise CaseError("photo_not_image", "a photo must be a JPEG or PNG file")
    digest = hashlib.sha256(data).hexdigest()
    folder = Path(photos_dir) / str(case_id)
    private_directory(folder)  # photos of farms and shops: 0700 directories, 0600 files
    path = folder / f"{digest}.{kind[1]}"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)  # a .tmp left by an older version keeps its mode otherwise
            out.write(data)
        tmp.replace(path)
    photo = case_store.add_photo(conn, case_id, now, user.name, kind[0], len(data), digest, str(path))
    case_store.touch(conn, case_id, now)
    case_store.add_event(conn, case_id, now, user.name, "photo", case["state"], case["state"],
                         {"photo": photo, "sha256": digest})
    return photo


def _cfg(cfg: dict | None) -> dict:
    if cfg is None:
        from gateway.supervision.rules import config as rules_config
        cfg = rules_config.load()
    return cfg


def needs_confirmation(cfg: dict | None, outcome: str) -> bool:
    return outcome in _cfg(cfg)["cases"]["confirm_outcomes"]


def may_confirm(user: User, pending: dict | None, cfg: dict | None) -> bool:
    return (pending is not None and user.name != pending["actor"]
            and LEVEL_RANK[user.role] >= LEVEL_RANK[_cfg(cfg)["cases"]["confirm_role"]])


def close(conn, now: int, user: User, case_id: int, outcome: str, notes: str | None = None,
          cfg: dict | None = None) -> dict:
    """Only an inspected case closes: the bureau's loop needs the on-site check.
    An outcome under the two-person rule (`cases.confirm_outcomes`) only
    proposes the close (the returned case stays inspected, with
    `pending_close`); any other closes at once. A confirmed or penalised case
    re-grades its subject when it closes (`cfg`: the rules configuration,
    default thresholds when None)."""
    if outcome not in OUTCOMES:
        raise CaseError("case_bad_input", f"outcome must be one of {', '.join(OUTCOMES)}")
    text = _notes(notes)
    case = _for_action(conn, user, case_id, ("inspected",))
    cfg = _cfg(cfg)
    if needs_confirmation(cfg, outcome):
        case_store.propose(conn, case_id, now, outcome, user.name, user.role, text)
        case_store.touch(conn, case_id, now)
        case_store.add_event(conn, case_id, now, user.name, "close_proposed", "inspected", "inspected",
                             {"outcome": outcome, "notes": text, "confirm_role": cfg["cases"]["confirm_role"]})
        return {**get(conn, case_id), "pending_close": proposal(conn, case_id)}
    return _close(conn, now, user, case, outcome, {"outcome": outcome, "notes": text}, cfg)


def confirm(conn, now: int, user: User, case_id: int, decision: str, outcome: str, notes: str | None = None,
            cfg: dict | None = None) -> dict:
    """The second person's answer to a proposed close: `confirm` closes the
    case with the proposed `outcome` (which the caller names, so a proposal
    changed meanwhile is not confirmed unseen); `reject` drops the proposal
    (the proposer may withdraw it too). The confirmer is another user, of
    `cases.confirm_role` or above, whom the case's area and level admit."""
    if decision not in ("confirm", "reject"):
        raise CaseError("case_bad_input", "decision must be confirm or reject")
    text = _notes(notes)
    case = _for_action(conn, user, case_id, ("inspected",))
    cfg = _cfg(cfg)
    pending = proposal(conn, case_id)
    if pending is None:
        raise CaseError("case_no_proposal", f"case {case_id} has no close awaiting confirmation")
    if pending["outcome"] != outcome:
        raise CaseError("case_proposal_changed", f"the proposed outcome is {pending['outcome']}")
    withdrawing = decision == "reject" and user.name == pending["actor"]
    if not withdrawing:
        if user.name == pending["actor"]:
            raise CaseError("case_confirm_self", f"{user.name} proposed this close")
        if not may_confirm(user, pending, cfg):
            raise CaseError("case_confirm_role", f"needs {cfg['cases']['confirm_role']} or above")
    case_store.drop_proposal(conn, case_id)
    if decision == "reject":
        case_store.touch(conn, case_id, now)
        case_store.add_event(conn, case_id, now, user.name, "close_rejected", "inspected", "inspected",
                             {"outcome": outcome, "notes": text, "proposed_by": pending["actor"]})
        return {**get(conn, case_id), "pending_close": None}
    return _close(conn, now, user, case, outcome,
                  {"outcome": outcome, "notes": text, "proposed_by": pending["actor"],
                   "proposal_notes": pending["notes"]}, cfg)


def _close(conn, now: int, user: User, case: dict, outcome: str, detail: dict, cfg: dict) -> dict:
    case_id = case["id"]
    case_store.drop_proposal(conn, case_id)
    case_store.set_closed(conn, case_id, outcome, now)
    case_store.add_event(conn, case_id, now, user.name, "closed", "inspected", "closed", detail)
    if outcome in COUNTS_AGAINST and case["subject"]:
        refresh_grades(conn, now, cfg, [case["subject"]])
    upstream_outbox.enqueue(conn, now, "case", {
        "case": case_id, "shop": case["shop"], "subject": case["subject"], "codes": case["codes"].split(","),
        "result": case["result"], "outcome": outcome, "closed": now, "opened": case["opened"]})
    return {**get(conn, case_id), "pending_close": None}


def grade(conn, subject: str, now: int, cfg: dict) -> dict:
    """Credit grade from confirmed or penalised cases in the last `months`:
    A below `b_from`, B below `c_from`, C from there (counts per case, i.e. per
    inspected incident, not per record, so one bad afternoon is one mark)."""
    c = cfg["credit"]
    n = case_store.count_against(conn, subject, _credit_since(now, c))
    return {"grade": _letter(n, c), "confirmed": n, "months": c["months"]}


def _credit_since(now: int, c: dict) -> int:
    return now - int(c["months"] * 30.5 * 86_400_000)


def _letter(n: int, c: dict) -> str:
    return "C" if n >= c["c_from"] else "B" if n >= c["b_from"] else "A"


def refresh_grades(conn, now: int, cfg: dict, subjects: list[str] | None = None) -> list[str]:
    """Bring `credit_grades` up to date, for some subjects (a case just
    closed) or for all that are or were below A (the sweep: a mark older than
    `months` no longer counts, so grades also rise with time). Returns the
    subjects whose grade changed; a change gives the terminals' `subjects`
    section a new version (gateway.store.registry.bump_subjects_rev), in this transaction."""
    c = cfg["credit"]
    counts = case_store.counts_against(conn, _credit_since(now, c), subjects)
    held = case_store.grades(conn, subjects)
    changed = []
    for subject in sorted(set(counts) | set(held) | set(subjects or ())):
        letter = _letter(counts.get(subject, 0), c)
        if held.get(subject, "A") == letter:
            continue
        if letter == "A":
            case_store.clear_grade(conn, subject)
        else:
            case_store.set_grade(conn, subject, letter, now)
        changed.append(subject)
    if changed:
        registry_store.bump_subjects_rev(conn)
        log.info("credit grades changed subjects=%s", ",".join(changed[:20]))
    return changed
