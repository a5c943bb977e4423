"""The dashboard in headless Chromium (Debian's, driven by Playwright) against a
gateway process fed by real terminal agents through a real Mosquitto with
per-terminal credentials: per-role areas, a violation followed from its record
to an assigned case through inspection and closing to the subject's grade, and
a terminal going offline on the fleet page without a reload. Screenshots of the
main pages only when asked: scripts/screenshots.sh (tests/support/screenshots.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from firmware.agent import Agent
from firmware.config import parse
from gateway.enforcement import fleet
from gateway.supervision import grid
from gateway.store import users
from gateway.store import Store
from simulator.broker import Mosquitto, free_port, wait_port
from simulator.processes import terminal_config_text, wait_for
from tests.support import screenshots
from tests.support.supervision import GRID, TERMINAL_SHOPS, VILLAGE1, VILLAGE3, DISTRICT, TOWN1
from tests.support.chromium import CHROMIUM, dashboard_page, launched

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "dashboard-pass-1"
GATEWAY_PASSWORD = "gateway-secret-1"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def district(tmp_path_factory):
    """One running district for the module (a broker, the gateway, four agents).
    Shared safely: each test sells to subjects of its own and asserts only on
    its own records and cases, or on what an area may see. Violations at SHOP1
    (TA, the village of v1) come only from `test_violation_...`, which counts
    the ones v1 sees; the other tests sell only normal products there."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium missing: scripts/test.sh installs it (apt-get install chromium)")
    root = tmp_path_factory.mktemp("dashboard")
    db = root / "gateway.db"
    store = Store(db)
    # open round the clock here: the sale times are the real clock's, and the
    # opening-hours rule has its own tests
    grid.import_grid(store.conn, {"areas": GRID["areas"],
                                  "shops": [{**s, "hours": "00:00-24:00"} for s in GRID["shops"]]})
    now = int(time.time() * 1000)
    creds = [fleet.provision(store, t, shop, now) for t, shop in TERMINAL_SHOPS.items()]
    for name, role, area in (("d1", "district", DISTRICT), ("t1", "town", TOWN1), ("v3", "village", VILLAGE3)):
        users.add_user(store.conn, name, role, area, PASSWORD, now)
    passwd, acl = fleet.write_broker_auth(store, root / "auth", GATEWAY_PASSWORD)
    store.close()
    # the village inspector of SHOP1 is added through the CLI, as an operator would
    env = _env() | {"NEW_USER_PASSWORD": PASSWORD}
    out = subprocess.run([sys.executable, "-m", "gateway", "users", "--db", str(db), "add", "--role", "village",
                          "--area", VILLAGE1, "--password-env", "NEW_USER_PASSWORD", "v1"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    broker = Mosquitto(root / "broker", password_file=passwd, acl_file=acl).start()
    port = free_port()
    log = open(root / "gateway.log", "ab")
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--broker", broker.url, "--db", str(db), "--username",
         fleet.GATEWAY_USER, "--http", f"127.0.0.1:{port}", "--sweep-interval", "0.3", "--verifiers", "1"],
        env=_env() | {"GATEWAY_MQTT_PASSWORD": GATEWAY_PASSWORD}, cwd=ROOT, stdout=log, stderr=log)
    agents: dict[str, Agent] = {}
    try:
        wait_port("127.0.0.1", port, timeout=60)
        for c in creds:
            text = terminal_config_text(c, broker.url, root / f"{c.terminal}.ledger.db", shop=TERMINAL_SHOPS[c.terminal])
            config = parse(tomllib.loads(text), root)
            config.reserve_bytes = 0
            agents[c.terminal] = Agent(config)
            agents[c.terminal].start()
        wait_for(lambda: _online(db) == 4, 30, "four terminals online")
        yield {"db": db, "url": f"http://127.0.0.1:{port}", "agents": agents, "root": root}
    finally:
        for agent in agents.values():
            try:
                agent.stop()
            except Exception:
                pass
        gateway.terminate()
        try:
            gateway.wait(timeout=20)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait()
        broker.kill()
        log.close()


def _online(db) -> int:
    import sqlite3
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM terminals WHERE state='online'").fetchone()[0]
    finally:
        conn.close()


def sell(agent: Agent, subject: str, product: str, packs: int = 1, identity: str = "card") -> int:
    body = {"subject": subject, "items": [{"product": product, "packs": packs}], "identity": identity,
            "mode": "online", "clerk": "clerk1", "card": f"CARD-{subject}"}
    return agent.record("sale", body).seq


@pytest.fixture(scope="module")
def browser():
    with launched() as b:
        yield b


def login(browser, url, name, viewport=None):
    return dashboard_page(browser, url, name, PASSWORD, viewport or {"width": 1280, "height": 860})


def shot(page, name):
    screenshots.save(page, name, full_page=True)


_TOKENS: dict[tuple[str, str], str] = {}


def api_get(url, name, path):
    """GET as `name`, logged in once per world: the API throttles logins per
    client address (a burst of 20, then one per 3 s), and every test here
    logs in from 127.0.0.1, so polling with a fresh login each time would
    spend the browser's logins."""
    with httpx.Client(base_url=url, timeout=10) as c:
        token = _TOKENS.get((url, name))
        if token is None:
            r = c.post("/api/login", json={"name": name, "password": PASSWORD})
            assert r.status_code == 200, r.text
            token = _TOKENS[(url, name)] = r.json()["token"]
        return c.get(path, headers={"Authorization": f"Bearer {token}"}).json()


def api_cases(url, name):
    return api_get(url, name, "/api/cases")["cases"]


def violations_seen(url, name) -> set[tuple[str, int]]:
    """(terminal, seq) of the violations filed in cases that `name` may see."""
    return {(v["terminal"], v["seq"]) for v in api_get(url, name, "/api/violations")["violations"]}


def in_ledger(url, shop, terminal, seq) -> bool:
    """The record is in the shop's ledger as the dashboard shows it (indexed, not only stored)."""
    return any((r["terminal"], r["seq"]) == (terminal, seq) for r in api_get(url, "d1", f"/api/shops/{shop}")["ledger"])


def test_violation_to_closed_case_changes_grade(district, browser):
    url, agents = district["url"], district["agents"]
    sell(agents["TA"], "S00001", "XK13-001-00101", 2)            # urea: a normal sale
    seq = sell(agents["TA"], "S00001", "PD20080301")              # paraquat: banned
    other = sell(agents["TC"], "S00003", "PD20080209")            # phorate: banned, other town
    sell(agents["TB"], "S00002", "PD20080101", identity="override")
    wait_for(lambda: {("TA", seq), ("TC", other)} <= violations_seen(url, "d1"), 30, "both cases opened")

    page = login(browser, url, "v1")
    shot(page, "overview")
    page.click("[data-testid=nav-queue]")
    page.wait_for_selector("[data-testid^=violation-row-]")
    shot(page, "queue")
    rows = page.locator("[data-testid^=violation-row-]")
    assert rows.count() == 1, "a village inspector sees only the village's violations"
    assert f"TA #{seq}" in rows.first.inner_text()
    rows.first.click()                                             # from the record to its case
    page.wait_for_selector("[data-testid=case-title]")
    assert page.locator("[data-testid=case-assignee]").inner_text() == "v1"
    assert page.locator("[data-testid=case-title] [data-state]").get_attribute("data-state") == "assigned"
    assert "A" in page.locator("[data-testid=case-grade]").inner_text()
    page.select_option("[data-testid=result]", "violation_found")
    page.fill("[data-testid=inspect-notes]", "货架上发现百草枯水剂 2 瓶，已封存")
    page.click("[data-testid=inspect-form] button")
    page.wait_for_selector("[data-testid=close-form]")
    page.select_option("[data-testid=outcome]", "penalised")
    page.fill("[data-testid=close-notes]", "责令整改，罚款")
    page.click("[data-testid=close-form] button")
    # two-person rule: the village inspector only proposes; the town confirms
    page.wait_for_selector("[data-testid=pending-close]")
    assert page.locator("[data-testid=confirm-close]").count() == 0
    assert "A" in page.locator("[data-testid=case-grade]").inner_text()
    case_url = page.url
    town = login(browser, url, "t1")
    town.goto(case_url)
    town.wait_for_selector("[data-testid=confirm-close]")
    town.fill("[data-testid=confirm-notes]", "同意处罚")
    town.click("[data-testid=confirm-close]")
    town.wait_for_selector("[data-testid=case-outcome]")
    town.close()
    page.reload()
    page.wait_for_selector("[data-testid=case-outcome]")
    timeline = page.locator("[data-testid=timeline] li").all_inner_texts()
    assert [t.split(" · ")[0] for t in timeline] == ["立案", "指派", "现场核查", "提请结案", "结案"]
    assert "货架上发现百草枯水剂" in " ".join(timeline) and "t1" in timeline[-1]
    shot(page, "case")
    page.click("[data-testid=case-subject]")
    page.wait_for_selector("[data-testid=subject-grade]")
    assert page.locator("[data-testid=subject-grade]").inner_text() == "B"
    shot(page, "subject")
    page.close()


def test_each_role_sees_only_its_area(district, browser):
    url, agents = district["url"], district["agents"]
    east = sell(agents["TA"], "S00011", "XK13-001-00101")        # urea, a normal sale in 东湖村
    west = sell(agents["TB"], "S00012", "PD20080301")             # paraquat: banned, 西湖村, town 1
    tangqi = sell(agents["TC"], "S00013", "PD20080209")           # phorate: banned, 塘栖村, town 2
    wait_for(lambda: {("TB", west), ("TC", tangqi)} <= violations_seen(url, "d1"), 30, "both cases opened")
    wait_for(lambda: in_ledger(url, "SHOP1", "TA", east), 30, "the normal sale in SHOP1's ledger")
    # (at least, at most): its own cases, and nothing outside the area whoever else sold
    expected = {"d1": ({"SHOP2", "SHOP3"}, {"SHOP1", "SHOP2", "SHOP3"}), "t1": ({"SHOP2"}, {"SHOP1", "SHOP2"}),
                "v3": ({"SHOP3"}, {"SHOP3"})}
    for name, (least, most) in expected.items():
        got = {c["shop"] for c in api_cases(url, name)}
        assert least <= got <= most, (name, got)
    page = login(browser, url, "v3")
    page.click("[data-testid=nav-queue]")
    page.wait_for_selector("[data-testid^=case-row-]")
    text = page.locator("main").inner_text()
    assert "塘栖农资店" in text and "东湖农资店" not in text and "西湖农资店" not in text
    page.close()
    page = login(browser, url, "t1")
    names = page.locator("[data-testid^=area-]").all_inner_texts()
    assert any("东湖村" in n for n in names) and not any("塘栖" in n for n in names)
    page.click("[data-testid=lang]")
    page.wait_for_selector("text=Open cases")
    shot(page, "overview-en")
    page.click("[data-testid=lang]")
    page.close()


def test_fleet_page_shows_a_terminal_going_offline_live(district, browser):
    url, agents = district["url"], district["agents"]
    seq = sell(agents["TA"], "S00021", "XK13-001-00101")          # for the shop page's ledger
    wait_for(lambda: in_ledger(url, "SHOP1", "TA", seq), 30, "the sale in SHOP1's ledger")
    page = login(browser, url, "d1")
    page.click("[data-testid=nav-fleet]")
    page.wait_for_selector("[data-testid=state-TD]")
    assert page.locator("[data-testid=state-TD]").get_attribute("class").endswith("b-online")
    started = time.monotonic()
    agents.pop("TD").stop()                                        # the shop's terminal goes away
    page.wait_for_selector("[data-testid=state-TD].b-offline", timeout=15_000)  # no reload: live update
    assert time.monotonic() - started < 15
    shot(page, "fleet")
    page.goto(url + "/#/shop/SHOP1")
    page.wait_for_selector(f'text="TA #{seq}"')
    shot(page, "shop")
    page.close()
    phone = login(browser, url, "t1", viewport={"width": 390, "height": 844})
    shot(phone, "overview-phone")
    phone.close()
