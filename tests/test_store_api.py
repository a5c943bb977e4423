"""The same supervision world built on SQLite and on PostgreSQL answers the
same through the API: statistics, violations, cases (and a case's whole
flow), subjects, fleet, shops, records, upstream and audit. The world is the
API tests' (tests/support/api_world.py): the real ingest, rules and cases."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from gateway import store
from gateway.api import create_app
from tests.support.api_world import PASSWORD, T0, build

MASTER_KEY = "55" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64

READS = ["/api/me", "/api/overview", "/api/stats/daily?days=3", "/api/stats/quota", "/api/violations",
         "/api/cases", "/api/cases?state=assigned", "/api/subjects/S00001", "/api/subjects/S00001?reveal=true",
         "/api/terminals", "/api/shops", "/api/shops/SHOP1", "/api/records?terminal=TA", "/api/upstream",
         "/api/audit", "/api/queue", "/api/queue?per_page=1&page=2", "/api/violations/groups",
         "/api/violations/groups?list=watch",
         # issue 18, items 8 and 9: search, filters, the map and the trends
         "/api/search?q=%E5%BC%A0", "/api/search?q=CARD3", "/api/search?q=330113199001011234",
         "/api/search?q=%E5%A1%98%E6%A0%96", "/api/search?q=pd2008", "/api/search?q=%25", "/api/search?q=%5C", "/api/products/PD20080301", "/api/map",
         "/api/stats/weekly", "/api/stats/weekly?by=shop&weeks=2", "/api/stats/weekly?by=village",
         "/api/queue?from=2025-06-01&to=2025-06-01&village=330113001001", "/api/queue?shop=SHOP3",
         "/api/violations/groups?subject=S00003&from=2025-06-01", "/api/cases?shop=SHOP1&to=2025-06-01",
         "/api/shops/SHOP1?subject=S00002&from=2025-05-31", "/api/subjects/S00001?shop=SHOP1&to=2025-06-01",
         "/api/terminals?town=330113002", "/api/violations?shop=SHOP2&from=2025-06-01&village=330113001002"]
EXPORTS = ["/api/queue?format=csv", "/api/violations/groups?format=csv&list=watch", "/api/cases?format=csv",
           "/api/shops/SHOP1?format=csv", "/api/subjects/S00001?format=csv", "/api/terminals?format=csv",
           "/api/violations?format=csv"]


def answers(client, who: str) -> dict:
    client.cookies.clear()
    r = client.post("/api/login", json={"name": who, "password": PASSWORD})
    assert r.status_code == 200, r.text
    h = {"Authorization": "Bearer " + r.json()["token"]}
    client.cookies.clear()
    out = {}
    for path in READS:
        r = client.get(path, headers=h)
        out[path] = (r.status_code, r.json())
    for path in EXPORTS:
        r = client.get(path, headers=h)
        out[path] = (r.status_code, r.content.decode("utf-8-sig") if r.status_code == 200 else r.json())
    r = client.get("/api/queue?format=xlsx", headers=h)
    out["queue xlsx"] = (r.status_code, [list(row) for row in load_workbook(io.BytesIO(r.content)).active
                                         .iter_rows(values_only=True)] if r.status_code == 200 else r.json())
    cases = client.get("/api/cases", headers=h).json()["cases"]
    for case in cases:
        r = client.get(f"/api/cases/{case['id']}", headers=h)
        out[f"case {case['id']}"] = (r.status_code, r.json())
        r = client.get(f"/api/cases/{case['id']}/sheet.pdf", headers=h)
        out[f"sheet {case['id']}"] = (r.status_code, (r.headers["content-type"], r.content[:5].decode()))
    return out


def case_flow(client, case_id: int) -> list:
    def login(name):
        client.cookies.clear()
        h = {"Authorization": "Bearer " + client.post("/api/login", json={"name": name, "password": PASSWORD})
             .json()["token"]}
        client.cookies.clear()
        return h

    v3, t2 = login("v3"), login("t2")
    steps = [client.post(f"/api/cases/{case_id}/inspect", headers=v3, json={"result": "violation_found"}),
             client.post(f"/api/cases/{case_id}/photos", headers={**v3, "Content-Type": "image/jpeg"}, content=JPEG),
             client.post(f"/api/cases/{case_id}/close", headers=v3, json={"outcome": "penalised", "notes": "罚款"}),
             client.post(f"/api/cases/{case_id}/confirm", headers=t2,
                         json={"decision": "confirm", "outcome": "penalised", "notes": "同意"}),
             client.get(f"/api/cases/{case_id}", headers=v3)]
    return [(r.status_code, r.json()) for r in steps]


def world(db, tmp_path, name):
    clock = {"now": T0}
    built = build(tmp_path / name, clock, db)
    clock["now"] = T0 + 300_000
    app = create_app(built, clock=lambda: clock["now"], photos_dir=tmp_path / name / "photos",
                     session_clock=lambda: clock["now"])
    return app


def test_the_api_answers_the_same_on_sqlite_and_postgresql(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv(store.MASTER_KEY_ENV, MASTER_KEY)
    (tmp_path / "sqlite").mkdir()
    (tmp_path / "pg").mkdir()
    got = {}
    try:
        for name, db in (("sqlite", None), ("pg", pg_url)):
            with TestClient(world(db, tmp_path, name)) as client:
                got[name] = {who: answers(client, who) for who in ("d1", "t1", "v3")}
                case_id = [c["id"] for c in got[name]["v3"]["/api/cases"][1]["cases"] if c["shop"] == "SHOP3"][0]
                got[name]["flow"] = case_flow(client, case_id)
    finally:
        store.close_pools()
    assert all(status == 200 for status, _ in got["sqlite"]["d1"].values())
    for who in ("d1", "t1", "v3"):
        assert got["pg"][who].keys() == got["sqlite"][who].keys()
        for path, answer in got["sqlite"][who].items():
            assert got["pg"][who][path] == answer, (who, path)
    assert [s for s, _ in got["sqlite"]["flow"]] == [200, 200, 202, 200, 200]
    assert got["pg"]["flow"] == got["sqlite"]["flow"]
    assert got["pg"]["flow"][-1][1]["grade"]["grade"] == "B"
