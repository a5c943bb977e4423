"""The gateway's quota ledger without a broker: authorization is consumption,
each record moves balances once, offline overdraws raise one violation, and
the registry CLIs import what the decisions read."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.enforcement import quota, registry
from gateway.enforcement.fleet import provision
from gateway.store import Store, transaction
from protocols import authz, configsync, envelope
from tests.support import quota_fixtures as fx
from tests.support.store_backends import backend_db  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parents[1]
KEY = bytes(range(32))
NOW = 1_790_000_000_000  # 2026-09-21 (CST)
DATE = authz.local_date(NOW)


@pytest.fixture
def ledger(backend_db):
    store = Store(backend_db)
    for name in ("T1", "T2"):
        provision(store, name, f"shop-{name}", 0, key_hex=KEY.hex())
    fx.add_shops(store.path, {"shop-T1": (fx.TOWN, False), "shop-T2": (fx.TOWN, False)})
    registry.set_section(store.conn, configsync.PARAMS, fx.params(), NOW)
    registry.import_subjects(store.conn, fx.subjects({"S1": 10, "S2": 8}), NOW)
    cache = quota.ConfigCache(refresh_s=0)
    applier = quota.RecordApplier(cache)
    yield SimpleNamespace(store=store, conn=store.conn, cache=cache, applier=applier, seqs={"T1": 0, "T2": 0})
    store.close()


def request(sale_id: str, subject: str = "S1", bags: int = 2, product=fx.UREA, request_id: str = "r1") -> dict:
    return {"v": 1, "terminal": "T1", "id": request_id, "sale_id": sale_id, "time": NOW, "subject": subject,
            "identity": "card", "cart": [{"product": product[0], "spec": product[1], "packs": bags}], "mac": "0" * 64}


def authorize(ledger, terminal: str, req: dict) -> dict:
    conn = ledger.conn
    with transaction(conn):
        return quota.authorize(conn, ledger.cache, terminal, req, NOW)


def store_record(ledger, terminal: str, rtype: str, body: dict, time_ms: int = NOW) -> int:
    """Run the ingest hook on a real signed record inside a transaction, as ingest does."""
    ledger.seqs[terminal] += 1
    seq = ledger.seqs[terminal]
    record = envelope.make_record(KEY, terminal, seq, envelope.GENESIS, time_ms, rtype, body)
    entry = SimpleNamespace(seq=seq, type=rtype, text=envelope.stored_text(record))
    with transaction(ledger.conn):
        ledger.applier(ledger.conn, terminal, entry, NOW)
    return seq


def sale(subject: str, bags: int, mode: str, sale_id: str, auth: str | None = None) -> dict:
    body = {"subject": subject, "items": [{"product": fx.UREA[0], "spec": fx.UREA[1], "packs": bags}],
            "identity": "card", "mode": mode, "clerk": "c1", "sale_id": sale_id,
            "consumption": {"fert_n": bags * fx.UREA_N_PER_BAG, "fert_total": bags * fx.UREA_N_PER_BAG}}
    if auth:
        body["auth"] = auth
    return body


def used_n(ledger, subject: str = "S1") -> int:
    return quota.used_of(ledger.conn, subject).get("fert_n", {}).get(DATE[:4], 0)


def test_online_authorization_commits_the_consumption_and_reports_balances(ledger):
    fields = authorize(ledger, "T1", request("sale-1", bags=2))
    assert fields["status"] == "ok" and fields["decision"]["decision"] == "approve"
    assert fields["auth"].startswith("A")
    assert used_n(ledger) == 46000
    assert fields["used"]["fert_n"] == {DATE[:4]: 46000}
    assert fields["subject"]["id"] == "S1" and "id_number" not in fields["subject"]


def test_repeated_request_replays_the_first_answer_and_consumes_once(ledger):
    first = authorize(ledger, "T1", request("sale-1", bags=2, request_id="r1"))
    again = authorize(ledger, "T1", request("sale-1", bags=2, request_id="r2"))
    assert again["replayed"] is True and again["auth"] == first["auth"]
    assert again["decision"] == first["decision"]
    assert used_n(ledger) == 46000


def test_quota_exceeded_online_consumes_nothing(ledger):
    fields = authorize(ledger, "T1", request("sale-1", bags=7))  # 161 kg N > 150 kg allowance
    assert fields["decision"]["decision"] == "refuse"
    assert fields["decision"]["codes"] == ["quota_exceeded"]
    assert fields["decision"]["items"][0]["max_packs"] == 6
    assert "auth" not in fields and used_n(ledger) == 0


def test_unknown_subject_is_refused_with_its_own_reason(ledger):
    fields = authorize(ledger, "T1", request("sale-1", subject="NOBODY"))
    assert fields["decision"]["codes"] == ["subject_unknown"]


def test_sale_record_matching_its_authorization_is_not_counted_again(ledger):
    fields = authorize(ledger, "T1", request("sale-1", bags=2))
    store_record(ledger, "T1", "sale", sale("S1", 2, "online", "sale-1", fields["auth"]))
    assert used_n(ledger) == 46000
    state = ledger.conn.execute("SELECT state, seq FROM authorizations").fetchone()
    assert state == ("matched", 1)


def test_offline_record_for_a_late_authorization_counts_once_either_order(ledger):
    # late authorization first, then the offline sale record
    authorize(ledger, "T1", request("sale-1", bags=2))
    store_record(ledger, "T1", "sale", sale("S1", 2, "offline", "sale-1"))
    assert used_n(ledger) == 46000
    # offline sale record first, then its late request: superseded, nothing consumed
    store_record(ledger, "T1", "sale", sale("S2", 1, "offline", "sale-2"))
    late = authorize(ledger, "T1", request("sale-2", subject="S2", bags=1))
    assert late["status"] == "error" and late["code"] == "auth_superseded"
    assert used_n(ledger, "S2") == 23000


def test_offline_sale_smaller_than_its_late_authorization_counts_what_was_sold(ledger):
    authorize(ledger, "T1", request("sale-1", bags=3))
    store_record(ledger, "T1", "sale", sale("S1", 1, "offline", "sale-1"))
    assert used_n(ledger) == 23000


def test_refusal_after_a_late_authorization_releases_it(ledger):
    authorize(ledger, "T1", request("sale-1", bags=2))
    store_record(ledger, "T1", "refusal", {"items": [], "reasons": ["offline_fraction_exceeded"], "clerk": "c1",
                                           "subject": "S1", "sale_id": "sale-1", "mode": "offline"})
    assert used_n(ledger) == 0


def test_late_request_after_its_offline_refusal_consumes_nothing(ledger):
    store_record(ledger, "T1", "refusal", {"items": [], "reasons": ["offline_fraction_exceeded"], "clerk": "c1",
                                           "subject": "S1", "sale_id": "sale-1", "mode": "offline"})
    late = authorize(ledger, "T1", request("sale-1", bags=2))
    assert late["status"] == "error" and late["code"] == "auth_superseded"
    assert used_n(ledger) == 0


def test_void_gives_the_consumption_back_once(ledger):
    fields = authorize(ledger, "T1", request("sale-1", bags=2))
    seq = store_record(ledger, "T1", "sale", sale("S1", 2, "online", "sale-1", fields["auth"]))
    void = {"voids": seq, "reason": "customer_returned", "clerk": "c1", "subject": "S1", "auth": fields["auth"]}
    store_record(ledger, "T1", "void", void)
    store_record(ledger, "T1", "void", void)  # a second void of the same sale gives nothing more
    assert used_n(ledger) == 0


def test_void_arriving_before_its_sale_nets_to_zero(ledger):
    fields = authorize(ledger, "T1", request("sale-1", bags=2))
    ledger.seqs["T1"] = 1  # the void is seq 2 and arrives first
    store_record(ledger, "T1", "void", {"voids": 1, "reason": "x", "clerk": "c1", "subject": "S1",
                                        "auth": fields["auth"]})
    ledger.seqs["T1"] = 0
    store_record(ledger, "T1", "sale", sale("S1", 2, "online", "sale-1", fields["auth"]))
    assert used_n(ledger) == 0


def test_offline_sales_at_two_shops_overdrawing_raise_one_violation_naming_both(ledger):
    store_record(ledger, "T1", "sale", sale("S2", 3, "offline", "a"))   # S2: 120 kg N allowance
    store_record(ledger, "T2", "sale", sale("S2", 3, "offline", "b"))   # 138 kg N: overdrawn by 18 kg
    store_record(ledger, "T2", "sale", sale("S2", 1, "offline", "c"))   # still overdrawn: no second violation
    rows = ledger.conn.execute("SELECT code, subject, detail FROM violations").fetchall()
    assert len(rows) == 1
    code, subject, detail = rows[0]
    detail = json.loads(detail)
    assert (code, subject) == ("over_quota", "S2")
    assert detail["shops"] == ["shop-T1", "shop-T2"]
    assert detail["categories"]["fert_n"] == {"allowance": 120000, "used": 138000, "over": 18000}


def test_a_hook_error_is_contained_and_reported(ledger):
    bad = sale("S1", 1, "offline", "x")
    bad["consumption"] = {"fert_n": 1}
    ledger.conn.execute("DROP TABLE quota_sales")  # sabotage: the hook's insert fails
    store_record(ledger, "T1", "sale", bad)
    assert used_n(ledger) == 0  # rolled back to the savepoint, nothing half-applied
    codes = [r[0] for r in ledger.conn.execute("SELECT code FROM violations")]
    assert codes == ["quota_apply_failed"]


def test_stale_authorizations_are_released(ledger):
    authorize(ledger, "T1", request("sale-1", bags=2))
    with transaction(ledger.conn):
        assert quota.release_stale(ledger.conn, NOW + quota.HOLD_TTL_MS + 1) == 1
    assert used_n(ledger) == 0


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_cli_imports_subjects_from_csv_and_jsonl_and_prints_the_balance(tmp_path):
    db = tmp_path / "gw.db"
    csv = tmp_path / "s.csv"
    csv.write_text("subject,status,town,crop,area_mu,id_number\nS-C,active,T,rice,5.5,330100199001011234\n"
                   "S-C,,,tea,2,\n", "utf-8")
    jsonl = fx.write_jsonl(tmp_path / "s.jsonl", [{"id": "S-J", "town": "T"},
                                                   {"subject": "S-J", "crop": "rice", "area_cmu": 1000}])
    assert run_cli("subjects", "import", str(csv), "--db", str(db)).returncode == 0
    out = run_cli("subjects", "import", str(jsonl), "--db", str(db))
    assert out.returncode == 0 and "1 subjects with 1 plots" in out.stdout
    params = tmp_path / "params.json"
    params.write_text(json.dumps(fx.params()))
    assert run_cli("policy", "import", str(params), "--db", str(db)).returncode == 0
    report = json.loads(run_cli("balance", "S-C", "--db", str(db), "--date", "2026-04-01").stdout)
    # 5.5 mu rice x 15 kg + 2 mu tea x 20 kg of N
    assert report["categories"]["fert_n"] == {"period": "2026", "allowance": 122500, "used": 0,
                                              "remaining": 122500, "enforced": True}
    assert report["categories"]["pesticide_g"]["period"] == "2026-spring"
    missing = run_cli("balance", "NOBODY", "--db", str(db))
    assert missing.returncode == 1 and "no such subject" in missing.stderr


def test_cli_refuses_a_bad_file_and_changes_nothing(tmp_path):
    db = tmp_path / "gw.db"
    bad = tmp_path / "bad.csv"
    bad.write_text("subject,crop,area_mu\nS-1,rice,10\nS-2,rice,ten\n", "utf-8")
    out = run_cli("subjects", "import", str(bad), "--db", str(db))
    assert out.returncode == 1 and "bad.csv:3" in out.stderr and "not a number" in out.stderr
    cat = tmp_path / "cat.json"
    cat.write_text(json.dumps({"version": 1, "ingredients": {}, "products": {"X": {"kind": "candy"}}}))
    out = run_cli("catalogue", "import", str(cat), "--db", str(db))
    assert out.returncode == 1 and "products.X.kind" in out.stderr
    assert run_cli("balance", "S-1", "--db", str(db)).returncode == 1


def test_subject_group_is_optional_checked_and_never_sent_to_terminals():
    rows = "subject,group,crop,area_mu\nS-A,HH1,rice,5\nS-A,,tea,1\nS-B,,rice,2\n"
    a, b = registry.parse_subjects(rows, "s.csv")
    assert a["group"] == "HH1" and "group" not in b
    (j,) = registry.parse_subjects(json.dumps({"id": "S-J", "group": "COOP.7"}) + "\n", "s.jsonl")
    assert j["group"] == "COOP.7"
    assert "group" not in quota.public_entry(a)  # terminals decide per subject; the group stays here
    with pytest.raises(registry.RegistryError, match=r"s.csv:2: group '户 1'"):
        registry.parse_subjects("subject,group\nS-C,户 1\n", "s.csv")


class SlowReads:
    """The ledger's connection, pausing after it reads a subject's balances:
    two decisions for one subject then overlap for certain, if anything lets
    them (the pause is in the test's connection, not in the gateway)."""

    def __init__(self, conn, pause: float):
        self._conn, self._pause = conn, pause

    def execute(self, sql, params=()):
        cur = self._conn.execute(sql, params)
        if sql.startswith("SELECT category, period, used FROM quota_used"):
            time.sleep(self._pause)
        return cur

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_two_workers_deciding_at_once_never_both_take_the_last_of_a_quota(ledger):
    """Two connections (two gateway workers) authorize 4 bags each for S1 at
    the same moment: 2 x 92 kg N is over the 150 kg allowance, so exactly one
    is approved, on SQLite (BEGIN IMMEDIATE) and on PostgreSQL (a per-subject
    advisory lock) alike."""
    from gateway.store import connect

    results, errors = {}, []

    def decide(name):
        conn = connect(ledger.store.path)
        try:
            with transaction(conn):
                results[name] = quota.authorize(SlowReads(conn, 0.3), quota.ConfigCache(refresh_s=0), name,
                                                request(f"sale-{name}", bags=4, request_id=name), NOW)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)
        finally:
            conn.close()

    threads = [threading.Thread(target=decide, args=(name,)) for name in ("T1", "T2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(r["decision"]["decision"] for r in results.values()) == ["approve", "refuse"]
    assert used_n(ledger) == 92_000
