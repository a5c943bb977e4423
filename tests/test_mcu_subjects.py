"""The card-only terminal reads its buyer's registry entry and used figures off
indexes of the synced `subjects` and `balances` sections, a line at a time
(firmware/mcu/sync.py `subjects.idx`, `balances.idx`): a town's subjects
section is hundreds of KB of text and does not fit a ~100 KB heap parsed
whole. The indexes are made from the section text an entry at a time and
checked as they go: they refuse what configsync.check_section refuses, and a
lookup gives what a search of the whole section gives."""

from __future__ import annotations

import copy
import json

import pytest

from protocols import canonical, configsync
from tests.support import mcu
from tests.support import quota_fixtures as fx
from tests.support.mcu_district import McuDistrict
from tests.test_mcu_memory import BYTECODE_HEAP

pytestmark = pytest.mark.timeout(600)


def _subjects() -> dict:
    entries = fx.subjects({"S-I-0001": 3, "S-I-0002": 5, "S-I-0003": 7})
    entries[1].update(village="V01", village_name="一村", grade="B")
    return {"subjects": entries, "town": fx.TOWN}


def _balances() -> dict:
    return {"rev": 12, "acked": 4, "used": {"S-I-0001": {"fert_n": {"2026": 18400}}, "S-I-0003": {}}}


def _index(tmp_path, name: str, content: dict, code: str, heap: str | None = None) -> mcu.Result:
    section = tmp_path / f"{name}.section"
    section.write_text(canonical.dumps(content), "utf-8")
    return mcu.run(f"""
import json, os, sync
from protocols import configsync
store = sync.ConfigStore({str(tmp_path / "config")!r}, "M001", b"k" * 32)
store._versions[{name!r}] = 7
try:
    store._index_rows({name!r}, 7, {str(section)!r})
    os.rename(store._idx({name!r}) + ".new", store._idx({name!r}))
    print("INDEXED")
except configsync.Invalid as err:
    print("REFUSED", err.code, err.detail)
print("LEFT", sorted(os.listdir({str(tmp_path / "config")!r})))
""" + code, heap=heap)


def test_lookups_give_what_the_whole_sections_give(tmp_path):
    subjects, balances = _subjects(), _balances()
    code = """
for sid in ("S-I-0001", "S-I-0002", "S-I-0003", "S-I-0004"):
    print("ENTRY", json.dumps([sid, store.subject_entry(sid)]))
    print("BALANCE", json.dumps([sid, store.balance(sid)]))
"""
    result = _index(tmp_path, "subjects", subjects, "")
    assert result.returncode == 0, result.stdout + result.stderr
    result = _index(tmp_path, "balances", balances, "store._versions['subjects'] = 7\n" + code)
    assert result.returncode == 0, result.stdout + result.stderr
    entries = dict(json.loads(line) for line in result.lines("ENTRY"))
    for sid in ("S-I-0001", "S-I-0002", "S-I-0003", "S-I-0004"):
        assert entries[sid] == next((e for e in subjects["subjects"] if e["id"] == sid), None)
    figures = dict(json.loads(line) for line in result.lines("BALANCE"))
    assert figures["S-I-0001"] == [12, 4, {"fert_n": {"2026": 18400}}]
    assert figures["S-I-0003"] == [12, 4, {}]
    assert figures["S-I-0002"] is None and figures["S-I-0004"] is None


def test_an_index_of_another_version_is_not_used(tmp_path):
    """A power cut between the section's rename and its index's leaves an
    index of the version before: the lookup reads the section instead."""
    code = f"""
with open(store._file("subjects"), "w") as f:
    f.write("8\\n" + {canonical.dumps({"subjects": fx.subjects({"S-I-0009": 1})})!r})
store._versions["subjects"] = 8
print("OLD", store.subject_entry("S-I-0001"))
print("NEW", store.subject_entry("S-I-0009")["id"])
"""
    result = _index(tmp_path, "subjects", _subjects(), code)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.lines("OLD") == ["None"] and result.lines("NEW") == ["S-I-0009"]


def _broken(kind: str) -> tuple[str, dict]:
    subjects, balances = _subjects(), _balances()
    if kind == "bad_status":
        subjects["subjects"][1]["status"] = "sleeping"
        return "subjects", subjects
    if kind == "unknown_subject_field":
        subjects["subjects"][2]["shoe_size"] = 44
        return "subjects", subjects
    if kind == "subject_without_id":
        del subjects["subjects"][0]["id"]
        return "subjects", subjects
    if kind == "subjects_not_a_list":
        subjects["subjects"] = {"S-I-0001": subjects["subjects"][0]}
        return "subjects", subjects
    if kind == "no_subjects":
        del subjects["subjects"]
        return "subjects", subjects
    if kind == "unknown_section_field":
        subjects["extra"] = 1
        return "subjects", subjects
    if kind == "no_rev":
        del balances["rev"]
        return "balances", balances
    if kind == "bad_used_key":
        balances["used"]["not an id"] = {}
        return "balances", balances
    if kind == "bad_used_figure":
        balances["used"]["S-I-0001"]["fert_n"]["2026"] = "a lot"
        return "balances", balances
    if kind == "used_not_an_object":
        balances["used"] = [1, 2]
        return "balances", balances
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["bad_status", "unknown_subject_field", "subject_without_id", "subjects_not_a_list",
                                  "no_subjects", "unknown_section_field", "no_rev", "bad_used_key",
                                  "bad_used_figure", "used_not_an_object"])
def test_the_streamed_check_refuses_what_the_whole_check_refuses(tmp_path, kind):
    name, content = _broken(kind)
    with pytest.raises(configsync.Invalid):
        configsync.check_section(name, copy.deepcopy(content))
    result = _index(tmp_path, name, content, "")
    assert result.returncode == 0, result.stdout + result.stderr
    (refused,) = result.lines("REFUSED")
    assert refused.startswith(f"config_invalid {name}: ")
    assert result.lines("LEFT") == ["[]"]     # no index, no leftovers


# A town's registry: a few thousand subjects in the shop's area, ~400 KB of
# section text; the buyer is the last of them, with 2 mu of rice (one 40 kg
# bag of urea within the allowance, a second over it).
TOWN_SUBJECTS = 3000
BUYER = "S-T-%04d" % (TOWN_SUBJECTS - 1)


def test_a_town_of_subjects_syncs_and_sells_offline_in_the_bytecode_heap(tmp_path):
    """Loading the subjects section whole (json.load, as before the index)
    ran this heap out: the offline sale got no decision (MemoryError)."""
    subjects = {"S-T-%04d" % i: 10 for i in range(TOWN_SUBJECTS - 1)}
    subjects[BUYER] = 2
    main = mcu.bytecode_tree(tmp_path / "mpy")
    d = McuDistrict(tmp_path / "district", subjects=subjects, carded=[BUYER], heap=BYTECODE_HEAP, main=main)
    d.start()
    try:
        d.wait_config(timeout=300)
        size = (d.root / "flash" / "config" / "subjects.json").stat().st_size
        assert size > 300_000, size
        d.gateway.kill()
        first = d.terminal.sell(d.cards[BUYER], [{"product": fx.UREA[0], "packs": 1}], timeout=60)
        assert first.startswith("APPROVED"), first
        second = d.terminal.sell(d.cards[BUYER], [{"product": fx.UREA[0], "packs": 1}], timeout=60)
        assert second.split()[:2] in (["REFUSED", "quota_exceeded"], ["REFUSED", "offline_fraction_exceeded"]), second
    finally:
        d.close()
    log = d.terminal.log.read_text()
    assert "MemoryError" not in log
    sales = [r for r in d.ledger_lines() if r["type"] in ("sale", "refusal")]
    assert [(r["type"], r["body"].get("mode")) for r in sales] == [("sale", "offline"), ("refusal", "offline")]
