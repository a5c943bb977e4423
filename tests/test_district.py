"""The generated district (simulator/district.py): deterministic from its seed,
sized as asked, consistent with the grid and the policy, and accepted by the
gateway's own import commands."""

import dataclasses
import datetime as dt
import json
import random
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.supervision import grid
from protocols import card, policy
from simulator import district as model

ROOT = Path(__file__).resolve().parents[1]
TODAY = "2025-04-14"


@pytest.fixture(scope="module")
def linping():
    """Generated once for the module: the tests only read it (its shops and
    subjects are frozen; `purchases_on` and `write` take from it, never give back)."""
    return model.generate(seed=7, shops=20)


def test_linping_is_the_default_with_its_real_streets_and_town(linping):
    assert (linping.code, linping.name) == ("330113", "临平区")
    assert [t.name for t in linping.towns] == ["临平街道", "东湖街道", "南苑街道", "星桥街道", "运河街道",
                                               "乔司街道", "崇贤街道", "塘栖镇"]
    assert all(t.code.startswith("330113") and len(t.code) == 9 for t in linping.towns)


@pytest.mark.parametrize("seed, shops, subjects", [(1, 1, None), (1, 3, 10), (42, 20, None), (5, 8, 500)])
def test_same_seed_gives_the_same_district(seed, shops, subjects):
    a = model.generate(seed, shops, subjects)
    b = model.generate(seed, shops, subjects)
    assert a.grid_toml() == b.grid_toml()
    assert a.subjects_jsonl() == b.subjects_jsonl()
    assert a.cards_json() == b.cards_json()


def test_another_seed_gives_another_district():
    assert model.generate(1, 5).subjects_jsonl() != model.generate(2, 5).subjects_jsonl()


@pytest.mark.parametrize("shops, subjects, villages, want_subjects, want_villages", [
    (1, None, None, 60, 8),          # at least one village per town
    (3, 10, None, 10, 8),
    (20, None, None, 1200, 20),
    (30, 100, 45, 100, 45),
])
def test_sizes_are_respected(shops, subjects, villages, want_subjects, want_villages):
    d = model.generate(3, shops, subjects, villages)
    assert len(d.shops) == shops and len({s.terminal for s in d.shops}) == shops
    assert len(d.subjects) == want_subjects and len({s.id for s in d.subjects}) == want_subjects
    assert len(d.villages) == want_villages


@pytest.mark.parametrize("shops", [1, 7, 20])
def test_every_shop_is_in_a_village_of_its_town_and_near_linping(shops):
    d = model.generate(11, shops)
    villages = {v.code: v for v in d.villages}
    for shop in d.shops:
        assert villages[shop.village].town == shop.town
        assert 30.2 < shop.lat < 30.6 and 120.0 < shop.lon < 120.5
        assert grid.parse_hours(shop.hours)
        assert shop.licence.startswith("农药经许（浙）330113")
    assert any(s.designated for s in d.shops)
    assert len({s.licence for s in d.shops}) == shops


def test_allowances_are_non_zero_for_subjects_with_plots(linping):
    with_plots = [s for s in linping.subjects if s.plots]
    assert len(with_plots) > 0.9 * len(linping.subjects)
    for s in with_plots:
        assert all(type(p["area_cmu"]) is int and p["area_cmu"] > 0 for p in s.plots)
        assert any(linping.allowance(s.id, c, TODAY) > 0 for c in ("fert_n", "fert_total")), s
    for s in linping.subjects:
        if not s.plots:
            assert linping.allowance(s.id, "fert_n", TODAY) == 0


def test_allowance_is_area_times_norm(linping):
    s = next(s for s in linping.subjects if s.plots)
    norms = linping.params["norms"]
    want = sum(p["area_cmu"] * norms[p["crop"]].get("fert_n", 0) for p in s.plots) // 100
    assert linping.allowance(s.id, "fert_n", TODAY) == want


def test_cards_verify_with_the_registry_key_and_are_bound_to_their_uid(linping):
    trusted = card.trust_store([linping.registry_public_key])
    for s in linping.subjects[:50]:
        got = card.verify(s.card.payload, s.card.uid, trusted, TODAY)
        assert (got.subject_id, got.card_no, got.district) == (s.id, s.card.card_no, "330113")
    s = linping.subjects[0]
    with pytest.raises(card.CardRejected) as err:
        card.verify(s.card.payload, linping.subjects[1].card.uid, trusted, TODAY)
    assert err.value.code == "card_copied"


def test_subjects_buy_at_a_shop_of_their_own_town_when_it_has_one(linping):
    towns_with_shops = {s.town for s in linping.shops}
    for s in linping.subjects:
        if s.town in towns_with_shops:
            assert linping.shop(s.home_shop).town == s.town


@pytest.mark.parametrize("date", ["2025-04-14", "2025-12-07", "2026-07-01"])
def test_purchase_pattern_is_a_pure_function_of_rng_and_date(linping, date):
    a = model.purchases_on(linping, random.Random(3), date)
    b = model.purchases_on(linping, random.Random(3), date)
    assert a == b and a
    products = {(p.key, p.spec, p.ean) for p in linping.products}
    for p in a:
        shop = linping.shop(p.shop)
        assert any(lo <= p.minute < hi for lo, hi in grid.parse_hours(shop.hours)), (p, shop.hours)
        assert p.lines and all((prod, spec, ean) in products and packs >= 1 for prod, spec, packs, ean in p.lines)
    assert [p.minute for p in a] == sorted(p.minute for p in a)


def test_spring_is_busier_than_winter_and_weekdays_than_sundays(linping):
    def count(date):
        return sum(len(model.purchases_on(linping, random.Random(n), date)) for n in range(3))
    assert count("2025-04-14") > 2 * count("2025-12-15")       # both Mondays
    assert count("2025-04-14") > count("2025-04-13")            # Monday vs Sunday
    assert dt.date(2025, 4, 13).weekday() == 6


def test_written_files_match_the_gateway_formats(linping, tmp_path):
    files = linping.write(tmp_path)
    data = tomllib.loads(files["grid"].read_text("utf-8"))
    assert len(data["shops"]) == 20 and len(data["areas"]) == 1 + 8 + len(linping.villages)
    lines = [json.loads(l) for l in files["subjects"].read_text("utf-8").splitlines()]
    assert [l["id"] for l in lines] == [s.id for s in linping.subjects]
    policy.balance({"id": "x", "status": "active"}, {}, json.loads(files["policy"].read_text()), TODAY)
    assert json.loads(files["terminals"].read_text()) == {s.terminal: s.id for s in linping.shops}


def test_the_gateway_import_commands_accept_the_written_district(tmp_path):
    d = model.generate(seed=2, shops=4, subjects=40)
    files = d.write(tmp_path / "files")
    db = str(tmp_path / "gw.db")
    for args in (["grid", "--db", db, "import", str(files["grid"])],
                 ["subjects", "import", str(files["subjects"]), "--db", db],
                 ["policy", "import", str(files["policy"]), "--db", db],
                 ["catalogue", "import", str(files["catalogue"]), "--db", db]):
        proc = subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
    subject = next(s for s in d.subjects if s.plots)
    proc = subprocess.run([sys.executable, "-m", "gateway", "balance", subject.id, "--db", db, "--date", TODAY],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["categories"]
    assert report["fert_n"]["allowance"] == d.allowance(subject.id, "fert_n", TODAY) > 0


def test_a_district_needs_a_shop():
    with pytest.raises(ValueError):
        model.generate(1, 0)


def test_dataclasses_are_frozen_so_a_run_cannot_change_its_district(linping):
    with pytest.raises(dataclasses.FrozenInstanceError):
        linping.shops[0].designated = True


def test_seeding_links_one_terminal_per_shop_and_logins_work(tmp_path):
    from firmware import config as agent_config
    from gateway.store import users
    from gateway.store import connect
    from simulator import seeding

    d = model.generate(seed=4, shops=3, subjects=30)
    db = tmp_path / "gw.db"
    seeded = seeding.seed(db, d, tmp_path / "files", now_ms=1_700_000_000_000)
    conn = connect(db)
    try:
        linked = dict(conn.execute("SELECT id, shop FROM terminals"))
        assert linked == {s.terminal: s.id for s in d.shops}
        assert conn.execute("SELECT count(*) FROM subjects").fetchone()[0] == 30
        roles = {l.role: l for l in seeded.logins}
        assert roles["district"].area == "330113" and roles["town"].area == d.towns[0].code
        assert users.login(conn, "town", roles["town"].password, 1_700_000_000_000) is not None
        assert users.login(conn, "town", "wrong-password", 1_700_000_000_000) is None
    finally:
        conn.close()
    paths = seeding.write_terminal_configs(tmp_path / "terminals", d, seeded.creds, "mqtt://127.0.0.1:1883")
    for shop in d.shops:
        cfg = agent_config.load(paths[shop.terminal])
        assert (cfg.terminal, cfg.shop) == (shop.terminal, shop.id)
        assert cfg.counter.registry_keys == (d.registry_public_key,)
