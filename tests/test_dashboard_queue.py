"""The supervision desk in headless Chromium (Debian's, driven by
Playwright) against the API served for real over a world built through the
real ingest, rules and case filing (tests/support/api_world.py): issue 18's
items 6, 7 and 11 as district and village staff see them."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.supervision import cases

from gateway.enforcement import fleet

from gateway.store import users, violations
from gateway.api import create_app
from gateway.supervision.rules import config
from gateway.store import Store, transaction
from tests.support import screenshots
from tests.support.api_server import Served
from tests.support.api_world import PASSWORD, T0, add_queue_findings, add_sales, build
from tests.support.supervision import KEY
from tests.support.chromium import CHROMIUM, dashboard_page, launched

NOW = T0 + 300_000
TOP_BUYERS = 25   # more than a page (20) of the watch list
SALES = 23        # more than a page (20) of SHOP4's ledger
IDLE = 21         # terminals last seen three days before the server's clock: with the world's four, two pages
DAY = 86_400_000


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium missing: scripts/test.sh installs it (apt-get install chromium)")
    root = tmp_path_factory.mktemp("dashboard-queue")
    db = build(root, {"now": T0})
    add_queue_findings(db)
    store = Store(db)
    with transaction(store.conn) as conn:
        for i in range(TOP_BUYERS):
            violations.report(conn, T0 + i, "top_buyer", f"top_buyer:2025-05:S1{i:04d}", subject=f"S1{i:04d}",
                              shop="SHOP1", detail={"month": "2025-05", "rank": i + 1, "category": "pesticide_g",
                                                    "ratio": 0.9})
        cases.file_new_violations(conn, T0 + 250_000, config.load())
    users.add_user(store.conn, "v1", "village", "330113001001", PASSWORD, T0, display_name="王村管")
    store.close()
    add_sales(db, "TD", SALES, T0 - 2 * 3_600_000)
    store = Store(db)
    for i in range(IDLE):   # after the sales' supervision pass, or they would be silent-terminal findings
        fleet.provision(store, f"TX{i:02d}", "SHOP4", T0, key_hex=KEY.hex())
        store.conn.execute("UPDATE terminals SET last_seen=? WHERE id=?", [NOW - 3 * DAY, f"TX{i:02d}"])
    store.close()
    app = create_app(db, clock=lambda: NOW, photos_dir=root / "photos", session_clock=lambda: NOW)
    with Served(app) as server:
        yield {"url": server.url, "db": db}


@pytest.fixture(scope="module")
def browser():
    with launched() as b:
        yield b


def login(browser, url, name, viewport=None):
    return dashboard_page(browser, url, name, PASSWORD, viewport, timezone_id="Europe/London")


def test_queue_puts_the_shared_card_and_banned_sales_first_and_fleet_health_on_the_watch_list(served, browser):
    page = login(browser, served["url"], "d1")
    page.click("[data-testid=nav-queue]")
    page.wait_for_selector("[data-testid=queue] [data-testid^=case-row-]")
    rows = page.locator("[data-testid=queue] [data-testid^=case-row-]")
    severities = [int(x) for x in rows.locator("[data-severity]").evaluate_all("els => els.map(e => e.dataset.severity)")]
    assert severities == [1, 1, 1, 3]
    texts = rows.all_inner_texts()
    assert "同一张卡在相距过远的两店先后使用" in texts[0] and "严重" in texts[0]
    assert not any("本月用量占定额比例居前" in t or "终端时钟偏差过大" in t for t in texts)
    violation_rows = page.locator("[data-testid=violations] [data-testid^=violation-row-]").all_inner_texts()
    assert violation_rows and not any("终端时钟偏差过大" in t for t in violation_rows)
    skew = page.locator("[data-testid=watch] [data-testid^=watch-row-]", has_text="终端时钟偏差过大")
    assert skew.count() == 1 and "×3" in skew.inner_text()      # three findings, one row
    screenshots.save(page, "queue-severity", full_page=True)
    page.close()


def test_watch_list_pages_without_moving_the_queue(served, browser):
    page = login(browser, served["url"], "d1")
    page.click("[data-testid=nav-queue]")
    watch = page.locator("[data-testid=watch] [data-testid^=watch-row-]")
    page.wait_for_selector("[data-testid=watch] [data-testid^=watch-row-]")
    assert watch.count() == 20
    assert "第 1 / 2 页" in page.locator("[data-testid=pager-wp]").inner_text()
    first_page = watch.all_inner_texts()
    page.click("[data-testid=next-wp]")
    page.wait_for_selector("[data-testid=prev-wp]")
    assert watch.count() == TOP_BUYERS + 2 - 20          # with the world's own top buyer and the clock-skew row
    assert not set(watch.all_inner_texts()) & set(first_page)
    assert page.locator("[data-testid=queue] [data-testid^=case-row-]").count() == 4
    assert "wp=2" in page.url
    page.close()


def test_names_not_codes_and_local_times_in_a_browser_set_to_london(served, browser):
    page = login(browser, served["url"], "d1")
    page.click("[data-testid=nav-queue]")
    row = page.locator("[data-testid=queue] [data-testid^=case-row-]", has_text="东湖农资店")
    row.wait_for()
    text = row.inner_text()
    assert "张*" in text and "S00001" not in text           # the subject by masked name
    assert "王村管" in text and "v1" not in text             # the assignee by name
    banned = page.locator("[data-testid=violations] [data-testid^=violation-row-]", has_text="东湖农资店")
    assert "售出禁用农药：200克/升百草枯水剂" in banned.inner_text()
    assert "2025-06-01 11:03" in banned.inner_text()        # 03:03 UTC, 04:03 in London: Shanghai time shown
    assert "{" not in page.locator("main").inner_text()
    row.click()
    page.wait_for_selector("[data-testid=case-title]")
    assert page.locator("[data-testid=case-violations] [data-testid=sentence]").all_inner_texts() == [
        "售出禁用农药：200克/升百草枯水剂"]
    assert page.locator("[data-testid=case-subject]").inner_text() == "张*"
    assert page.locator("[data-testid=case-assignee]").inner_text() == "王村管"
    assert "王村管" in page.locator("[data-testid=assignee] option:checked").inner_text()
    page.click("[data-testid=lang]")
    page.wait_for_selector("text=Sold a banned pesticide: 200克/升百草枯水剂")
    page.click("[data-testid=lang]")
    page.goto(served["url"] + "/#/shop/SHOP1")
    product = page.locator(".product[data-reg=PD20080301]").first
    product.wait_for()
    assert product.inner_text() == "200克/升百草枯水剂×1" and product.get_attribute("title") == "PD20080301"
    assert "刷卡" in page.locator("main").inner_text()
    page.goto(served["url"] + "/#/subject/S00001")
    page.wait_for_selector("[data-testid=balance-fert_n]")
    balance = page.locator("[data-testid=balance-fert_n]").inner_text()
    assert "氮肥（折纯N）" in balance and "150 kg" in balance            # 10 mu of rice at 15 kg N a mu
    assert page.locator("[data-testid=reg-town]").inner_text() == "临平街道"
    assert page.locator("dt", has_text="状态").count() and page.locator("[data-testid=reg-status]").inner_text() == "正常"
    assert page.locator("h1").inner_text().startswith("主体 张*")
    page.close()


def test_ledger_and_fleet_are_paged_and_last_seen_counts_from_the_servers_clock_in_days(served, browser):
    page = login(browser, served["url"], "d1")
    page.goto(served["url"] + "/#/shop/SHOP4")
    page.wait_for_selector("[data-testid=pager-page]")
    ledger = page.locator("text=/^TD #\\d+$/")
    assert ledger.count() == 20
    newest = ledger.all_inner_texts()
    assert newest[0] == f"TD #{SALES}"
    page.click("[data-testid=next-page]")
    page.wait_for_selector("[data-testid=prev-page]")
    assert ledger.all_inner_texts() == [f"TD #{n}" for n in range(SALES - 20, 0, -1)]
    # the server's calendar is 2025-06-01; the browser's clock is today: "last seen" counts from the server's
    page.goto(served["url"] + "/#/fleet")
    page.wait_for_selector("[data-testid=terminal-TX00]")
    assert page.locator("[data-testid=card-fleet-online] .n").inner_text() == f"0/{IDLE + 4}"   # none connected
    assert page.locator("[data-testid^=terminal-]").count() == 20
    idle = page.locator("[data-testid=terminal-TX00]").inner_text()
    assert "3 天" in idle
    page.click("[data-testid=next-page]")
    page.wait_for_selector("[data-testid=prev-page]")
    assert page.locator("[data-testid^=terminal-]").count() == IDLE + 4 - 20
    page.close()


def file_finding(db, n: int) -> None:
    """A new finding in SHOP3's case, as the rules would file it: the event
    stream tells every open page that cases changed."""
    store = Store(db)
    try:
        with transaction(store.conn) as conn:
            violations.report(conn, NOW, "sale_outside_hours", f"probe:{n}", subject="S00003", shop="SHOP3",
                              terminal="TC", seq=1, detail={"local_time": f"23:{n:02d}", "hours": "07:00-19:00"})
            cases.file_new_violations(conn, NOW, config.load())
    finally:
        store.close()


def test_queue_and_case_fit_a_phone_with_the_deadline_in_view(served, browser):
    page = login(browser, served["url"], "v1", viewport={"width": 390, "height": 844})
    page.click("[data-testid=nav-queue]")
    row = page.locator("[data-testid=queue] [data-testid^=case-row-]").first
    row.wait_for()
    in_view = ("(s) => { const el = document.querySelector(s); if (!el) return false;"
               " const r = el.getBoundingClientRect(); return r.width > 0 && r.left >= 0 && r.right <= 390; }")
    page.wait_for_function(in_view, arg="[data-testid=queue] td[data-label=期限]")   # the deadline in view
    assert "2025-06-04" in row.locator("td[data-label=期限]").inner_text()        # 72 h after filing
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshots.save(page, "queue-phone", full_page=True)
    row.locator("a.rowlink").click()
    page.wait_for_selector("[data-testid=case-title]")
    page.wait_for_function(in_view, arg="[data-testid=case-deadline]")
    assert "2025-06-04" in page.locator("[data-testid=case-deadline]").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshots.save(page, "case-phone", full_page=True)
    page.close()


def test_every_queue_row_and_case_action_is_reachable_by_keyboard(served, browser):
    page = login(browser, served["url"], "v1")
    page.click("[data-testid=nav-queue]")
    page.wait_for_selector("[data-testid=queue] [data-testid^=case-row-]")

    def tab_to(selector: str, limit: int = 120) -> bool:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
                return True
        return False

    assert tab_to("[data-testid=queue] a.rowlink")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid=case-title]")
    reached = set()
    for _ in range(80):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("() => { const a = document.activeElement; const f = a.closest('form');"
                                  " return (f ? f.dataset.testid + ':' : '') + a.tagName + (a.dataset.testid ? '#' + a.dataset.testid : ''); }"))
    for action in ("assign-form:SELECT#assignee", "assign-form:BUTTON", "inspect-form:SELECT#result",
                   "inspect-form:TEXTAREA#inspect-notes", "inspect-form:BUTTON", "photo-form:INPUT#photo-file",
                   "photo-form:BUTTON", "A#case-subject"):
        assert action in reached, (action, reached)
    page.close()


def test_live_refresh_keeps_the_focus_and_waits_for_a_selection(served, browser):
    page = login(browser, served["url"], "d1")
    page.click("[data-testid=nav-queue]")
    page.wait_for_selector("[data-testid=queue] [data-testid^=case-row-]")
    page.wait_for_function("() => source && source.readyState === 1 && !rendering")
    link = page.locator("[data-testid=queue] [data-testid^=case-row-] a.rowlink").nth(1)
    href = link.get_attribute("href")
    link.focus()
    drawn = page.locator("main").get_attribute("data-rendered")
    file_finding(served["db"], 1)
    page.wait_for_function("(d) => document.getElementById('main').dataset.rendered !== d", arg=drawn)
    assert page.evaluate("() => document.activeElement.getAttribute('href')") == href   # focus kept through the redraw

    page.wait_for_function("() => !rendering && !stale")           # no redraw in flight to clear what we select
    sentence = page.locator("[data-testid=violations] [data-testid=sentence]").first
    page.evaluate("(el) => { const r = document.createRange(); r.selectNodeContents(el);"
                  " getSelection().removeAllRanges(); getSelection().addRange(r); }", sentence.element_handle())
    selected = page.evaluate("() => getSelection().toString()")
    drawn = page.locator("main").get_attribute("data-rendered")
    file_finding(served["db"], 2)
    page.wait_for_function("() => stale === true")                 # the change arrived and the redraw waits
    assert page.evaluate("() => getSelection().toString()") == selected and selected
    assert page.locator("main").get_attribute("data-rendered") == drawn
    page.evaluate("() => getSelection().removeAllRanges()")
    page.wait_for_function("(d) => document.getElementById('main').dataset.rendered !== d", arg=drawn)
    page.close()


def test_a_page_left_while_it_loads_is_never_drawn_over_the_page_gone_to(served, browser):
    """The overview's data comes late (a slow line; in CI, a live refresh in
    flight) and the user has already clicked through to the queue: the queue
    is what stays on the screen, not the overview drawn over it."""
    page = login(browser, served["url"], "d1")
    page.click("[data-testid=nav-map]")
    page.wait_for_selector("[data-testid=map]")
    page.evaluate("""() => { const f = window.fetch;
        window.fetch = (u, o) => String(u).includes('/api/overview')
            ? new Promise((done) => setTimeout(done, 1500)).then(() => f(u, o)) : f(u, o); }""")
    page.click("[data-testid=nav-overview]")
    page.click("[data-testid=nav-queue]")               # while the overview is still being fetched
    page.wait_for_selector("[data-testid=queue] [data-testid^=case-row-]")
    page.wait_for_timeout(2500)                           # the overview's late answer has come and gone
    assert page.evaluate("location.hash").startswith("#/queue")
    assert page.locator("[data-testid=queue]").count() == 1
    assert page.locator("[data-testid=card-sales]").count() == 0
    page.close()
