"""Case workflow: violations open or join cases on the grid, escalate on
deadline, need an inspection before closing, audit every change, and feed the
subject's credit grade."""

import pytest

from gateway.supervision import cases, grid

from gateway.store import users, violations
from gateway.supervision.rules import config
from gateway.store import connect
from tests.support.store_backends import backend_db  # noqa: F401 - a fixture
from tests.support.supervision import GRID, TOWN1, VILLAGE1

NOW = 1748746800000
CFG = config.load()
JPEG = b"\xff\xd8\xff\xe0" + b"0" * 100


@pytest.fixture
def conn(backend_db):
    conn = connect(backend_db)
    grid.import_grid(conn, GRID)
    conn.execute("INSERT INTO terminals(id, key, shop) VALUES ('TA', '00', 'SHOP1'), ('TC', '00', 'SHOP3')")
    yield conn
    conn.close()


def user(conn, name, role, area):
    users.add_user(conn, name, role, area, "password-1", NOW)
    return users.user_by_name(conn, name)


def violate(conn, code, dedup, subject="S1", shop="SHOP1", now=NOW, terminal=None):
    violations.report(conn, now, code, dedup, subject=subject, shop=shop, terminal=terminal)
    cases.file_new_violations(conn, now, CFG)


def only_case(conn):
    (case_id,) = [r[0] for r in conn.execute("SELECT id FROM cases")]
    return cases.get(conn, case_id)


def test_violation_opens_case_assigned_to_village_inspector(conn):
    user(conn, "v1", "village", VILLAGE1)
    violate(conn, "banned_product_sold", "a")
    case = only_case(conn)
    assert (case["state"], case["level"], case["assignee"], case["town"]) == ("assigned", "village", "v1", TOWN1)
    assert [e["action"] for e in cases.timeline(conn, case["id"])] == ["opened", "assigned"]


def test_without_village_inspector_the_town_holds_it_and_second_violation_joins(conn):
    user(conn, "t1", "town", TOWN1)
    violate(conn, "banned_product_sold", "a")
    violate(conn, "sale_outside_hours", "b")
    violate(conn, "sale_outside_hours", "c", subject="S2")
    first, second = [cases.get(conn, r[0]) for r in conn.execute("SELECT id FROM cases ORDER BY id")]
    assert (first["level"], first["assignee"], first["violations"]) == ("town", "t1", 2)
    assert first["codes"] == "banned_product_sold,sale_outside_hours" and second["subject"] == "S2"


def test_violation_from_terminal_alert_finds_its_shop(conn):
    violations.report(conn, NOW, "ledger_gap", "alert:1", terminal="TC")
    cases.file_new_violations(conn, NOW, CFG)
    case = only_case(conn)
    assert (case["shop"], case["town"], case["state"], case["level"]) == ("SHOP3", "330113002", "open", "district")


def test_each_violation_is_filed_once(conn):
    violate(conn, "banned_product_sold", "a")
    assert cases.file_new_violations(conn, NOW + 1, CFG) == 0
    assert only_case(conn)["violations"] == 1


def test_overdue_case_escalates_to_town_then_district(conn):
    user(conn, "v1", "village", VILLAGE1)
    user(conn, "t1", "town", TOWN1)
    violate(conn, "banned_product_sold", "a")
    assert cases.escalate_due(conn, NOW + 71 * 3600_000, CFG) == 0
    assert cases.escalate_due(conn, NOW + 73 * 3600_000, CFG) == 1
    case = only_case(conn)
    assert (case["level"], case["assignee"]) == ("town", "t1")
    cases.escalate_due(conn, NOW + 150 * 3600_000, CFG)
    assert only_case(conn)["level"] == "district"
    # the village inspector may no longer act on it
    with pytest.raises(cases.CaseError) as err:
        cases.inspect(conn, NOW, users.user_by_name(conn, "v1"), case["id"], "violation_found")
    assert err.value.code == "case_not_your_level"


def test_inspection_photo_close_and_grade(conn, tmp_path):
    v1 = user(conn, "v1", "village", VILLAGE1)
    violate(conn, "banned_product_sold", "a")
    case_id = only_case(conn)["id"]
    assert cases.grade(conn, "S1", NOW, CFG)["grade"] == "A"
    with pytest.raises(cases.CaseError) as err:
        cases.close(conn, NOW, v1, case_id, "confirmed")
    assert err.value.code == "case_bad_transition"
    cases.inspect(conn, NOW + 1, v1, case_id, "violation_found", "货架上发现百草枯")
    photo = cases.add_photo(conn, NOW + 2, v1, case_id, JPEG, tmp_path / "photos")
    t1 = user(conn, "t1", "town", TOWN1)
    proposed = cases.close(conn, NOW + 3, v1, case_id, "penalised", "罚款")
    assert proposed["state"] == "inspected" and proposed["pending_close"]["actor"] == "v1"
    closed = cases.confirm(conn, NOW + 4, t1, case_id, "confirm", "penalised", "同意")
    assert closed["state"] == "closed" and closed["outcome"] == "penalised"
    events = cases.timeline(conn, case_id)
    assert [(e["action"], e["actor"]) for e in events][-4:] == [("inspected", "v1"), ("photo", "v1"),
                                                                ("close_proposed", "v1"), ("closed", "t1")]
    assert events[-4]["detail"]["notes"] == "货架上发现百草枯"
    assert events[-1]["detail"] == {"outcome": "penalised", "notes": "同意", "proposed_by": "v1",
                                    "proposal_notes": "罚款"}
    assert (tmp_path / "photos" / str(case_id)).exists() and photo > 0
    assert cases.grade(conn, "S1", NOW + 4, CFG)["grade"] == "B"
    assert conn.execute("SELECT kind FROM outbox").fetchall() == [("case",)]


def test_out_of_area_user_cannot_see_or_act_and_bad_input_changes_nothing(conn, tmp_path):
    user(conn, "v1", "village", VILLAGE1)
    other = user(conn, "v3", "village", "330113002001")
    violate(conn, "banned_product_sold", "a")
    case_id = only_case(conn)["id"]
    before = (only_case(conn), cases.timeline(conn, case_id))
    for action in (lambda: cases.inspect(conn, NOW, other, case_id, "violation_found"),
                   lambda: cases.inspect(conn, NOW, users.user_by_name(conn, "v1"), case_id, "'; DROP TABLE cases;--"),
                   lambda: cases.add_photo(conn, NOW, users.user_by_name(conn, "v1"), case_id, b"<svg/>", tmp_path),
                   lambda: cases.assign(conn, NOW, users.user_by_name(conn, "v1"), case_id, "v3")):
        with pytest.raises(cases.CaseError):
            action()
    assert (only_case(conn), cases.timeline(conn, case_id)) == before


def test_watch_list_findings_open_no_case_unless_the_rules_file_sends_them_to_the_queue(conn):
    """Top-buyer rankings and fleet health (`[queue] watch`) are for the office,
    not a site visit: they open no case and join none; a rules file that
    leaves a code off the watch list sends it to inspectors as before."""
    user(conn, "v1", "village", VILLAGE1)
    violate(conn, "top_buyer", "t1", subject="S9")
    violate(conn, "clock_skew", "c1", subject=None, shop=None, terminal="T1")
    violate(conn, "terminal_silent", "s1", subject=None)
    assert conn.execute("SELECT count(*) FROM cases").fetchone()[0] == 0
    violate(conn, "banned_product_sold", "b1", subject="S9")
    violate(conn, "top_buyer", "t2", subject="S9")        # the same shop and subject: still joins nothing
    assert only_case(conn)["codes"] == "banned_product_sold" and only_case(conn)["violations"] == 1
    queue_all = config.load(overrides={"queue": {"watch": ["clock_skew"]}})
    violations.report(conn, NOW, "top_buyer", "t3", subject="S8", shop="SHOP1")
    cases.file_new_violations(conn, NOW, queue_all)
    assert sorted(r[0] for r in conn.execute("SELECT codes FROM cases")) == ["banned_product_sold", "top_buyer"]
    assert conn.execute("SELECT count(*) FROM violations").fetchone()[0] == 6     # every finding is still recorded


def test_dismissed_cases_do_not_lower_the_grade(conn):
    d = user(conn, "d1", "district", "330113")
    for i in range(3):
        violate(conn, "split_purchase", f"x{i}", subject="S9")
        case_id = conn.execute("SELECT max(id) FROM cases").fetchone()[0]
        cases.inspect(conn, NOW, d, case_id, "no_violation_found")
        cases.close(conn, NOW, d, case_id, "dismissed" if i < 2 else "confirmed")
    assert cases.grade(conn, "S9", NOW, CFG) == {"grade": "B", "confirmed": 1, "months": 12}


def test_grades_for_the_terminals_follow_closed_cases_and_age_out(conn):
    """What the shop terminals get (`quota.terminal_entries`): the village by
    name and the grade; each grade change bumps the `subjects` section's
    version (a confirmed case at once, an expired mark at the sweep)."""
    from gateway.enforcement import quota
    rev = lambda: conn.execute("SELECT value FROM quota_meta WHERE key='subjects_rev'").fetchone()[0]  # noqa: E731
    entries = [{"id": "S1", "status": "active", "town": TOWN1, "village": VILLAGE1, "id_number": "330102199001011234"},
               {"id": "S2", "status": "active", "town": TOWN1}]
    assert quota.terminal_entries(conn, entries) == [
        {"id": "S1", "status": "active", "town": TOWN1, "village": VILLAGE1, "village_name": "东湖村", "grade": "A"},
        {"id": "S2", "status": "active", "town": TOWN1, "grade": "A"}]
    d = user(conn, "d1", "district", "330113")
    start = rev()
    seen = []
    for i, outcome in enumerate(("dismissed", "confirmed", "confirmed", "confirmed")):
        violate(conn, "split_purchase", f"g{i}", subject="S1")
        case_id = conn.execute("SELECT max(id) FROM cases").fetchone()[0]
        cases.inspect(conn, NOW + i, d, case_id, "violation_found")
        cases.close(conn, NOW + i, d, case_id, outcome)
        seen.append((quota.terminal_entries(conn, entries)[0]["grade"], rev() - start))
    assert seen == [("A", 0), ("B", 1), ("B", 1), ("C", 2)]    # a version only when the grade changes
    assert quota.terminal_entries(conn, entries)[1]["grade"] == "A"
    assert cases.refresh_grades(conn, NOW + 10, CFG) == [] and rev() == start + 2
    later = NOW + int(13 * 30.5 * 86_400_000)          # the marks are older than credit.months = 12
    assert cases.refresh_grades(conn, later, CFG) == ["S1"] and rev() == start + 3
    assert quota.terminal_entries(conn, entries)[0]["grade"] == "A"
    assert conn.execute("SELECT count(*) FROM credit_grades").fetchone()[0] == 0
    renamed = {"areas": [dict(a, name="东湖社区") if a["code"] == VILLAGE1 else a for a in GRID["areas"]],
               "shops": GRID["shops"]}
    grid.import_grid(conn, renamed)                    # a village renamed: the terminals show the new name
    assert rev() == start + 4 and quota.terminal_entries(conn, entries)[0]["village_name"] == "东湖社区"
    grid.import_grid(conn, renamed)                    # the same grid again changes nothing
    assert rev() == start + 4


def inspected_case(conn, inspector, subject="S1"):
    violate(conn, "banned_product_sold", f"two-person-{subject}", subject=subject)
    case_id = conn.execute("SELECT max(id) FROM cases").fetchone()[0]
    cases.inspect(conn, NOW, inspector, case_id, "violation_found")
    return case_id


def test_one_village_user_cannot_penalise_alone(conn):
    """Two-person rule: the village inspector's `penalised` is a proposal; the
    grade, the terminals' section and the upstream feed stay as they were
    until a second person at town level or above confirms."""
    v1, t1 = user(conn, "v1", "village", VILLAGE1), user(conn, "t1", "town", TOWN1)
    other_village = user(conn, "v1b", "village", VILLAGE1)
    case_id = inspected_case(conn, v1)
    cases.close(conn, NOW + 1, v1, case_id, "penalised", "罚款")
    untouched = (cases.get(conn, case_id)["state"], cases.grade(conn, "S1", NOW + 2, CFG)["grade"],
                 conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
    assert untouched == ("inspected", "A", 0)
    for who, code in ((v1, "case_confirm_self"), (other_village, "case_confirm_role")):
        with pytest.raises(cases.CaseError) as err:
            cases.confirm(conn, NOW + 2, who, case_id, "confirm", "penalised")
        assert err.value.code == code
    with pytest.raises(cases.CaseError) as err:      # the confirmer names what it saw
        cases.confirm(conn, NOW + 2, t1, case_id, "confirm", "confirmed")
    assert err.value.code == "case_proposal_changed"
    assert cases.grade(conn, "S1", NOW + 2, CFG)["grade"] == "A" and cases.proposal(conn, case_id)["actor"] == "v1"
    cases.confirm(conn, NOW + 3, t1, case_id, "confirm", "penalised")
    assert cases.get(conn, case_id)["state"] == "closed" and cases.grade(conn, "S1", NOW + 4, CFG)["grade"] == "B"
    assert cases.proposal(conn, case_id) is None and conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1


def test_a_proposal_can_be_rejected_or_withdrawn_and_other_outcomes_close_at_once(conn):
    v1, t1 = user(conn, "v1", "village", VILLAGE1), user(conn, "t1", "town", TOWN1)
    case_id = inspected_case(conn, v1)
    cases.close(conn, NOW, v1, case_id, "penalised")
    rejected = cases.confirm(conn, NOW + 1, t1, case_id, "reject", "penalised", "证据不足")
    assert rejected["state"] == "inspected" and cases.proposal(conn, case_id) is None
    cases.close(conn, NOW + 2, v1, case_id, "penalised")
    cases.confirm(conn, NOW + 3, v1, case_id, "reject", "penalised")          # the proposer withdraws
    with pytest.raises(cases.CaseError) as err:
        cases.confirm(conn, NOW + 4, t1, case_id, "confirm", "penalised")
    assert err.value.code == "case_no_proposal"
    closed = cases.close(conn, NOW + 5, v1, case_id, "confirmed")             # not under the rule by default
    assert closed["state"] == "closed" and cases.grade(conn, "S1", NOW + 6, CFG)["grade"] == "B"
    assert [e["action"] for e in cases.timeline(conn, case_id)][-5:] == [
        "close_proposed", "close_rejected", "close_proposed", "close_rejected", "closed"]


def test_the_rules_file_sets_which_outcomes_need_a_second_person_and_from_which_role(conn, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[cases]\nconfirm_outcomes = ["confirmed", "penalised"]\nconfirm_role = "district"\n',
                     encoding="utf-8")
    cfg = config.load(rules)
    v1, t1 = user(conn, "v1", "village", VILLAGE1), user(conn, "t1", "town", TOWN1)
    d1 = user(conn, "d1", "district", "330113")
    case_id = inspected_case(conn, v1)
    assert cases.close(conn, NOW, t1, case_id, "confirmed", cfg=cfg)["state"] == "inspected"
    with pytest.raises(cases.CaseError) as err:
        cases.confirm(conn, NOW + 1, user(conn, "t1b", "town", TOWN1), case_id, "confirm", "confirmed", cfg=cfg)
    assert err.value.code == "case_confirm_role"
    assert cases.confirm(conn, NOW + 2, d1, case_id, "confirm", "confirmed", cfg=cfg)["state"] == "closed"
    for bad, key in (('confirm_outcomes = ["fined"]', "cases.confirm_outcomes"), ('confirm_role = "mayor"',
                                                                                  "cases.confirm_role")):
        rules.write_text(f"[cases]\n{bad}\n", encoding="utf-8")
        with pytest.raises(config.ConfigError, match=key):
            config.load(rules)


@pytest.mark.parametrize("char", ["\u202e", "\u202a", "\u2066", "\u2069", "\u200b", "\u200d", "\u200f", "\ufeff",
                                  "\u2060", "\u00ad", "\u2028", "\u0085", "\U000e0041"])
def test_notes_with_invisible_or_direction_characters_are_refused(conn, char):
    v1 = user(conn, "v1", "village", VILLAGE1)
    violate(conn, "banned_product_sold", "a")
    case_id = only_case(conn)["id"]
    before = (only_case(conn), cases.timeline(conn, case_id))
    notes = "未发现违规" + char + "已发现违规"
    for action in (lambda: cases.inspect(conn, NOW, v1, case_id, "violation_found", notes),
                   lambda: cases.assign(conn, NOW, v1, case_id, "v1", notes)):
        with pytest.raises(cases.CaseError) as err:
            action()
        assert err.value.code == "case_notes_hidden_characters" and f"U+{ord(char):04X}" in err.value.detail
    assert (only_case(conn), cases.timeline(conn, case_id)) == before
    assert cases.hidden_character("货架上 3 瓶\n已封存\t(见照片)") is None
