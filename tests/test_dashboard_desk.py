"""The desk's search, filters, exports, inspection sheet, map and trends in
headless Chromium (Debian's, driven by Playwright) against the API served for
real over the API world (tests/support/api_world.py): issue 18's items 8 and 9
as district and town staff see them."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from openpyxl import load_workbook

from gateway.api import create_app
from gateway.store import Store
from tests.support import screenshots
from tests.support.api_server import Served
from tests.support.api_world import PASSWORD, T0, add_queue_findings, build
from tests.support.chromium import CHROMIUM, box, boxes, dashboard_page, launched, overlaps

NOW = T0 + 300_000
LONG_TOWN = "临平街道农业综合执法服务中心辖区"   # 16 characters: more than the 8 the overview's chart used to keep
ID_NUMBER = "330113199001011234"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium missing: scripts/test.sh installs it (apt-get install chromium)")
    root = tmp_path_factory.mktemp("dashboard-desk")
    db = build(root, {"now": T0})
    add_queue_findings(db)
    store = Store(db)
    store.conn.execute("UPDATE areas SET name=? WHERE code='330113001'", [LONG_TOWN])
    store.close()
    app = create_app(db, clock=lambda: NOW, photos_dir=root / "photos", session_clock=lambda: NOW)
    with Served(app) as server:
        yield {"url": server.url, "db": db}


@pytest.fixture(scope="module")
def browser():
    with launched() as b:
        yield b


def login(browser, url, name, viewport=None):
    page = dashboard_page(browser, url, name, PASSWORD, viewport, timezone_id="Europe/London", accept_downloads=True)
    settled(page)
    return page


def settled(page):
    """The live stream's news so far is drawn and nothing is being redrawn: a
    form filled after this is not redrawn under the test's hands."""
    page.wait_for_function("() => changesSeen > 0 && !rendering && !stale && "
                           "document.querySelector('main').dataset.live === String(changesSeen)")


def rendered(page, selector):
    page.wait_for_selector(selector)
    return page.locator(selector)


def search(page, text):
    page.fill("[data-testid=search-q]", text)
    page.press("[data-testid=search-q]", "Enter")
    page.wait_for_function("t => document.querySelector('h1') && document.querySelector('h1').textContent.includes(t)",
                           arg=text)


def test_one_search_box_finds_farmers_shops_and_products_grouped_each_a_link(served, browser):
    page = login(browser, served["url"], "d1")
    search(page, "张")
    assert rendered(page, "[data-testid=result-subject-S00001]").inner_text() == "张*"
    page.click("[data-testid=result-subject-S00001]")
    page.wait_for_selector("[data-testid=subject-grade]")
    assert "#/subject/S00001" in page.url
    search(page, "塘栖")
    assert page.locator("[data-testid=results-shops] a").all_inner_texts() == ["塘栖农资店", "塘栖二店"]
    assert "(0)" in page.locator("h2", has_text="农户").inner_text()
    screenshots.save(page, "search", full_page=True)
    search(page, "百草枯")
    page.click("[data-testid=result-product-PD20080301]")
    assert rendered(page, "[data-testid=product-status]").inner_text() == "禁止销售"
    search(page, "CARD3")
    assert "按卡号" in rendered(page, "[data-testid=results-subjects] li").inner_text()
    search(page, ID_NUMBER)
    assert "按证件号" in rendered(page, "[data-testid=result-subject-S00001]").locator("..").inner_text()
    page.click("[data-testid=lang]")
    page.wait_for_selector("h2:has-text('Farmers / subjects')")
    assert "by ID number (audited)" in page.locator("[data-testid=results-subjects]").inner_text()
    page.click("[data-testid=lang]")
    page.context.close()
    phone = login(browser, served["url"], "v3", viewport={"width": 390, "height": 844})
    search(phone, "塘栖")
    assert phone.locator("[data-testid=results-shops] a").all_inner_texts() == ["塘栖农资店", "塘栖二店"]
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshots.save(phone, "search-phone", full_page=True)
    phone.context.close()


def test_the_search_box_appears_only_after_sign_in(served, browser):
    """A visitor's first screen is the sign-in form alone: a search box there
    (shown by the header's own display rule over its `hidden`) took the user
    name a visitor typed first."""
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    try:
        page = context.new_page()
        page.goto(served["url"] + "/")
        page.wait_for_selector("input[name=name]")
        assert not page.is_visible("[data-testid=search-form]")
        page.fill("input[name=name]", "d1")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("[data-testid=card-sales]")
        assert page.is_visible("[data-testid=search-q]")
    finally:
        context.close()


def test_after_midnight_the_overview_cards_still_show_yesterday(served, browser):
    """Just after midnight today's cards are 0: each also shows yesterday's
    figure, so the morning's overview is not a page of zeros (what a demo
    visitor saw at each simulated midnight)."""
    day_after = NOW + 86_400_000
    app = create_app(served["db"], clock=lambda: day_after, photos_dir=Path(served["db"]).parent / "photos",
                     session_clock=lambda: day_after)
    with Served(app) as server:
        before = login(browser, served["url"], "t1")
        sales_then = before.inner_text("[data-testid=card-sales] .n")
        refusals_then = before.inner_text("[data-testid=card-refusals] .n")
        before.context.close()
        page = login(browser, server.url, "t1")
        assert page.inner_text("[data-testid=card-sales] .n") == "0"
        assert int(sales_then) > 0
        assert page.inner_text("[data-testid=card-sales-note]") == f"昨日 {sales_then}"
        assert page.inner_text("[data-testid=card-refusals-note]") == f"昨日 {refusals_then}"
        page.context.close()


def test_a_town_user_finds_no_one_by_id_number_and_nothing_outside_the_town(served, browser):
    page = login(browser, served["url"], "t2")
    search(page, ID_NUMBER)
    assert "(0)" in page.locator("h2", has_text="农户").inner_text()
    search(page, "农资店")
    assert page.locator("[data-testid=results-shops] a").all_inner_texts() == ["塘栖农资店"]
    page.context.close()


def test_filters_live_in_the_address_and_a_shared_link_shows_the_same_list(served, browser):
    page = login(browser, served["url"], "d1")
    page.click("[data-testid=nav-queue]")
    page.wait_for_selector("[data-testid=queue] [data-testid^=case-row-]")
    assert page.locator("[data-testid=queue] [data-testid^=case-row-]").count() == 4
    page.select_option("[data-testid=filter-shop]", "SHOP3")
    page.fill("[data-testid=filter-from]", "2025-06-01")
    page.fill("[data-testid=filter-to]", "2025-06-01")
    page.click("[data-testid=filter-apply]")
    page.wait_for_function("() => location.hash.includes('shop=SHOP3')")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=queue] [data-testid^=case-row-]').length === 1")
    assert "塘栖农资店" in page.locator("[data-testid=queue] [data-testid^=case-row-]").inner_text()
    shared = page.url
    assert "from=2025-06-01" in shared and "to=2025-06-01" in shared
    screenshots.save(page, "queue-filtered", full_page=True)
    other = login(browser, served["url"], "d1")
    other.goto(shared)
    other.wait_for_function("() => document.querySelectorAll('[data-testid=queue] [data-testid^=case-row-]').length === 1")
    assert other.locator("[data-testid=filter-shop]").input_value() == "SHOP3"
    settled(other)
    # a day with nothing: the list says so instead of showing everything
    other.fill("[data-testid=filter-from]", "2025-06-02")
    other.fill("[data-testid=filter-to]", "2025-06-03")
    other.click("[data-testid=filter-apply]")
    other.wait_for_function("() => !document.querySelector('[data-testid=queue] [data-testid^=case-row-]')")
    other.context.close()
    # an address naming a shop outside the town: refused, not an empty list
    town = login(browser, served["url"], "t1")
    town.goto(served["url"] + "/#/queue?shop=SHOP3")
    assert rendered(town, "[role=alert]").inner_text()
    town.context.close()
    phone = login(browser, served["url"], "t2", viewport={"width": 390, "height": 844})
    phone.goto(served["url"] + "/#/queue?shop=SHOP3")
    phone.wait_for_function("() => document.querySelectorAll('[data-testid=queue] [data-testid^=case-row-]').length === 1")
    assert phone.locator("[data-testid=export-queue-csv]").is_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshots.save(phone, "queue-filtered-phone", full_page=True)
    phone.context.close()
    page.context.close()


def test_each_list_exports_csv_and_excel_with_its_filters(served, browser):
    page = login(browser, served["url"], "d1")
    page.goto(served["url"] + "/#/queue?town=330113002")
    page.wait_for_selector("[data-testid=export-queue-csv]")
    with page.expect_download() as got:
        page.click("[data-testid=export-queue-csv]")
    rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text("utf-8-sig"))))
    assert rows and {r["镇街"] for r in rows} == {"塘栖镇"}
    with page.expect_download() as got:
        page.click("[data-testid=export-watch-xlsx]")
    assert got.value.suggested_filename.endswith(".xlsx")
    sheet = list(load_workbook(io.BytesIO(Path(got.value.path()).read_bytes())).active.iter_rows(values_only=True))
    assert sheet[0][0] == "严重程度" and any(r[1] == "终端时钟偏差过大" for r in sheet[1:])
    page.goto(served["url"] + "/#/shop/SHOP1?subject=S00002")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=ledger] tbody tr').length === 1")
    with page.expect_download() as got:
        page.click("[data-testid=export-ledger-csv]")
    ledger = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text("utf-8-sig"))))
    assert [r["类型"] for r in ledger] == ["拒售"]
    page.click("[data-testid=nav-fleet]")
    page.wait_for_selector("[data-testid=export-terminals-xlsx]")
    for testid in ("export-terminals-csv", "export-terminals-xlsx"):
        assert "format=" in page.get_attribute(f"[data-testid={testid}]", "href")
    page.goto(served["url"] + "/#/subject/S00001")
    page.wait_for_selector("[data-testid=export-purchases-xlsx]")
    with page.expect_download() as got:
        page.click("[data-testid=export-purchases-xlsx]")
    assert len(list(load_workbook(io.BytesIO(Path(got.value.path()).read_bytes())).active.iter_rows())) == 3
    with page.expect_download() as got:
        page.click("[data-testid=export-subject-cases-csv]")
    cases = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text("utf-8-sig"))))
    assert cases and {r["主体编号"] for r in cases} == {"S00001"}
    page.goto(served["url"] + "/#/shop/SHOP3")
    page.wait_for_selector("[data-testid=export-shop-cases-csv]")
    with page.expect_download() as got:
        page.click("[data-testid=export-shop-cases-csv]")
    cases = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text("utf-8-sig"))))
    assert [r["门店"] for r in cases] == ["塘栖农资店"]
    page.context.close()


def test_the_case_page_prints_the_inspection_sheet_as_a_pdf(served, browser):
    page = login(browser, served["url"], "t2")
    page.click("[data-testid=nav-queue]")
    page.click("[data-testid=queue] [data-testid^=case-row-] a.rowlink")
    link = rendered(page, "[data-testid=print-sheet]")
    assert link.inner_text() == "打印现场检查记录表（PDF）"
    r = page.context.request.get(served["url"] + link.get_attribute("href"))
    assert r.status == 200 and r.headers["content-type"] == "application/pdf" and r.body().startswith(b"%PDF")
    screenshots.save(page, "case-sheet-button")
    page.context.close()


def test_the_map_draws_the_grid_from_its_own_coordinates_without_a_tile_server(served, browser):
    page = login(browser, served["url"], "d1")
    asked = []
    page.on("request", lambda r: asked.append(r.url))
    page.click("[data-testid=nav-map]")
    rendered(page, "[data-testid=map] [data-testid=map-shop-SHOP3]")
    assert page.get_attribute("[data-testid=map-shop-SHOP3]", "data-open") == "1"
    assert page.get_attribute("[data-testid=map-shop-SHOP4]", "data-open") == "0"
    assert page.locator("[data-testid=map] [data-testid=tile]").count() == 0
    assert sorted(page.locator("[data-testid=map] text.area-town").all_text_contents()) == sorted([LONG_TOWN, "塘栖镇"])
    names = boxes(page, "[data-testid=map] text.area-town, [data-testid=map] text.area-village")
    assert len(names) >= 2
    for i, b in enumerate(names):                                    # no name written over another
        assert not any(overlaps(b, o) for o in names[:i]), i
    # the two 塘栖 shops, 150 m apart, are drawn apart from the 临平 pair 20 km away
    circle = lambda shop: box(page, f"[data-testid=map-shop-{shop}] circle")
    assert abs(circle("SHOP1")["y"] - circle("SHOP3")["y"]) > 200
    svg = box(page, "[data-testid=map]")
    for b in boxes(page, "[data-testid=map] text"):                  # every name inside the drawing
        assert b["y"] >= svg["y"] and b["y"] + b["height"] <= svg["y"] + svg["height"]
    assert "null" not in page.locator("main").inner_text()
    assert all(u.startswith(served["url"]) for u in asked), [u for u in asked if not u.startswith(served["url"])]
    page.focus("[data-testid=map-shop-SHOP3]")
    page.keyboard.press("Enter")
    page.wait_for_function("() => location.hash === '#/shop/SHOP3'")
    page.click("[data-testid=nav-map]")
    rendered(page, "[data-testid=map-row-SHOP3]")
    screenshots.save(page, "map", full_page=True)
    page.context.close()
    phone = login(browser, served["url"], "v3", viewport={"width": 390, "height": 844})
    phone.goto(served["url"] + "/#/map")
    rendered(phone, "[data-testid=map-shop-SHOP3]")
    assert phone.locator("[data-testid=map-shop-SHOP1]").count() == 0
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshots.save(phone, "map-phone", full_page=True)
    phone.context.close()


def test_trends_per_week_keep_grams_and_millilitres_on_separate_charts(served, browser):
    page = login(browser, served["url"], "d1")
    page.click("[data-testid=nav-trends]")
    rendered(page, "[data-testid=chart-week-counts]")
    for testid in ("chart-week-g", "chart-week-ml", "chart-week-kg"):
        assert page.locator(f"[data-testid={testid}] path").count() == 1     # one series, one unit, per chart
    assert page.locator("[data-testid=chart-week-counts] path").count() == 3
    page.select_option("[data-testid=trend-by]", "shop")
    page.click("form.filters button[type=submit]")
    cells = rendered(page, "[data-testid=trend-SHOP1] td").all_inner_texts()
    assert cells[:3] == ["东湖农资店", "2", "1"] and cells[4:6] == ["20", "1000"]   # 20 g, 1000 mL: never 1020
    screenshots.save(page, "trends", full_page=True)
    page.click("[data-testid=trend-SHOP1] a.rowlink")
    page.wait_for_function("() => location.hash.includes('group=SHOP1')")
    page.wait_for_selector("h1:has-text('东湖农资店')")   # the shop's trend page drawn (the hash changes first)
    page.context.close()
    phone = login(browser, served["url"], "t2", viewport={"width": 390, "height": 844})
    phone.goto(served["url"] + "/#/trends")
    rendered(phone, "[data-testid=chart-week-g]")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshots.save(phone, "trends-phone", full_page=True)
    phone.context.close()


def test_chart_labels_are_whole_and_fit_inside_their_chart(served, browser):
    page = login(browser, served["url"], "d1")
    labels = rendered(page, "[data-testid=chart-area] text[data-label]")
    assert LONG_TOWN in labels.all_text_contents()       # not cut to 8 characters
    rendered(page, "[data-testid=chart-quota] text[data-label]")
    for chart_id in ("chart-area", "chart-quota"):        # level, and turned where they are long
        chart = box(page, f"[data-testid={chart_id}]")
        for i, b in enumerate(boxes(page, f"[data-testid={chart_id}] text")):
            assert b["x"] >= chart["x"] - 1 and b["x"] + b["width"] <= chart["x"] + chart["width"] + 1, (chart_id, i)
            assert b["y"] >= chart["y"] - 1 and b["y"] + b["height"] <= chart["y"] + chart["height"] + 1, (chart_id, i)
    # quota use as a percent of allowance: categories in g, mL and mg never share an axis of amounts
    assert page.locator("text=已用定额 %").count() >= 1
    ticks = [t.strip() for t in page.locator("[data-testid=chart-quota] text:not([data-label])").all_text_contents()]
    assert ticks and all(int(t) <= 1000 for t in ticks if t.isdigit()), ticks
    assert page.locator("[data-testid=chart-day-g] path").count() == 1
    assert page.locator("[data-testid=chart-day-ml] path").count() == 1
    screenshots.save(page, "overview-charts", full_page=True)
    page.context.close()


PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5b1b6f30000000049454e44ae426082")


def test_a_configured_tile_server_draws_under_the_shops_and_the_page_reads_in_english(served, browser, tmp_path):
    """A deployment with its own tile server names it in the rules file
    (`[map] tiles`): the map asks that server, and only it, for the tiles
    around the shops; the page's image policy lets exactly that origin in."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from gateway.supervision.rules import config
    from tests.support.api_world import copy_of

    asked = []

    class Tiles(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)

        def log_message(self, *args):
            pass

    tiles = ThreadingHTTPServer(("127.0.0.1", 0), Tiles)
    threading.Thread(target=tiles.serve_forever, daemon=True).start()
    template = f"http://127.0.0.1:{tiles.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
    db = copy_of(Path(served["db"]), tmp_path / "tiles")
    app = create_app(db, clock=lambda: NOW, photos_dir=tmp_path / "photos", session_clock=lambda: NOW,
                     rules_cfg=config.load(overrides={"map": {"tiles": template}}))
    try:
        with Served(app) as server:
            page = login(browser, server.url, "d1")
            page.click("[data-testid=lang]")
            page.click("[data-testid=nav-map]")
            rendered(page, "[data-testid=map] [data-testid=tile]")
            assert page.locator("h1").inner_text() == "Map"
            assert "Open cases" in page.locator("[data-testid=map-table]").inner_text()
            page.wait_for_function("() => performance.getEntriesByType('resource').some(e => e.name.endsWith('.png'))")
            assert asked and all(p.count("/") == 3 and p.endswith(".png") for p in asked)
            z = {int(p.split("/")[1]) for p in asked}
            assert len(z) == 1 and 8 <= z.pop() <= 18          # one zoom, a district's, not the world's
            page.click("[data-testid=nav-trends]")
            rendered(page, "[data-testid=chart-week-ml]")
            assert "Pesticide (liquid, mL)" in page.locator("main").inner_text()
            page.click("[data-testid=lang]")
            page.context.close()
    finally:
        tiles.shutdown()
        tiles.server_close()
