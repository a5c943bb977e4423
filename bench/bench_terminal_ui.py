"""Card tap to subject panel on screen: from a card put on the PN532 emulator's
field to the kiosk page in headless Chromium having rendered the subject panel,
through the real driver and poller, card verification, the agent's kiosk
session, server-sent events and the page's JavaScript. Target: p95 < 300 ms
online (issue 7).

Side by side with its baseline, the same tap measured to the moment the
server-sent event carrying the subject arrives at a plain HTTP client (no
browser): the difference is what the browser adds.

The clock: a MutationObserver the bench installs in the page (the shipped page
has no hook for it) stamps `Date.now()` when the panel with the tapped subject
is added to the document, the bench takes `time.time()` just before the card
goes on the field; both read the same system clock. The reader's poll interval
(50 ms) is inside the figures, as a farmer's tap would meet it: before each
tap the card is lifted until the poller has seen the field empty, then the tap
comes at a random point of the poll cycle (seeded, so runs compare).

    .venv/bin/python bench/bench_terminal_ui.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.support.kiosk_district import KioskShop  # noqa: E402

TARGET_MS = 300.0
POLL_S = 0.05                       # the kiosk's PN532 poll interval (terminal_ui/kiosk/buyer.py)
CHROMIUM = "/usr/bin/chromium"

# Set `window.__panelFor = SUBJECT` before a tap: `window.__panelAt` is then the
# time the subject panel naming it entered the page.
STAMP_PANEL = """
window.__panelFor = null; window.__panelAt = 0;
new MutationObserver((mutations) => {
  if (!window.__panelFor || window.__panelAt) return;
  for (const m of mutations) for (const node of m.addedNodes) {
    if (!(node instanceof Element)) continue;
    const el = node.matches("[data-testid=subject-id]") ? node : node.querySelector("[data-testid=subject-id]");
    if (el && el.textContent.includes(window.__panelFor)) { window.__panelAt = Date.now(); return; }
  }
}).observe(document, { childList: true, subtree: true });
"""


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def reset(shop: KioskShop, page=None):
    """Next customer: the card lifted and the counter back at idle, by the
    client signed in (the page's own button, or the harness's client)."""
    shop.lift()
    if page is not None:
        page.click("[data-testid=finish]")
        page.wait_for_selector("[data-testid=screen-idle]")
    else:
        shop.api("POST", "/api/finish")


def tap_phase(rng) -> None:
    """The farmer arrives at any moment of the reader's poll cycle."""
    time.sleep(rng.uniform(0, POLL_S))


def browser_rounds(shop: KioskShop, rounds: int, rng) -> list[float]:
    from playwright.sync_api import sync_playwright
    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu",
                                                                    "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 800, "height": 480}, locale="zh-CN")
        page.add_init_script(STAMP_PANEL)
        page.goto(shop.url + "/")
        page.wait_for_selector("[data-testid=screen-signin]")
        for digit in shop.pin:
            page.click(f"[data-testid=pin-key-{digit}]")
        page.click("[data-testid=signin-submit]")
        page.wait_for_selector("[data-testid=screen-idle]")
        for i in range(rounds + 2):
            subject = "S-0001" if i % 2 == 0 else "S-0002"
            page.evaluate("(s) => { window.__panelFor = s; window.__panelAt = 0; }", subject)
            tap_phase(rng)
            t0 = time.time() * 1000
            shop.tap(subject)
            # polled from here: wait_for_function evaluates strings, which the kiosk's CSP
            # forbids; the figure is the page's own stamp, not the moment it is read
            deadline = time.monotonic() + 10
            while not (shown := page.evaluate("window.__panelAt")):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no subject panel for {subject}")
                time.sleep(0.005)
            assert subject in page.inner_text("[data-testid=subject-id]")
            if i >= 2:                        # two warm-up rounds
                out.append(shown - t0)
            reset(shop, page)
        browser.close()
    return out


def sse_rounds(shop: KioskShop, rounds: int, rng) -> list[float]:
    """The harness's own client signs in (the counter passes to it from the
    page) and listens to its session's event stream."""
    shop.sign_in()
    cookies = shop.client.http.cookies
    out = []
    arrived: dict[str, float] = {}
    seen = threading.Event()
    subscribed = threading.Event()      # the first event (the current state) came: later ones will too

    def listen():
        try:
            with httpx.stream("GET", shop.url + "/api/events", cookies=cookies, timeout=None) as stream:
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        subscribed.set()
                        state = json.loads(line[6:])
                        if state.get("subject") and state["screen"] == "sale":
                            arrived.setdefault(state["subject"]["id"], time.time() * 1000)
                            seen.set()
        except httpx.HTTPError:
            pass   # the agent stopped at the end of the run

    threading.Thread(target=listen, daemon=True).start()
    if not subscribed.wait(10):
        raise TimeoutError("no first event from the kiosk")
    for i in range(rounds):
        subject = "S-0001" if i % 2 == 0 else "S-0002"
        arrived.clear()
        seen.clear()
        tap_phase(rng)
        t0 = time.time() * 1000
        shop.tap(subject)
        if not seen.wait(10):
            raise TimeoutError("no subject event")
        out.append(arrived[subject] - t0)
        reset(shop)
        deadline = time.monotonic() + 5
        while shop.state()["screen"] != "idle":
            if time.monotonic() > deadline:
                raise TimeoutError("kiosk not back to idle")
            time.sleep(0.01)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1, help="the taps' moments in the poll cycle")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        shop = KioskShop(Path(tmp))
        try:
            shop.start_agent()
            shop.wait_synced()
            browser = browser_rounds(shop, args.rounds, random.Random(args.seed))
            sse = sse_rounds(shop, args.rounds, random.Random(args.seed + 1))
        finally:
            shop.close()
    table = Table(title=f"card tap -> subject panel, {args.rounds} taps, online")
    for col in ("path", "p50 ms", "p95 ms", "max ms"):
        table.add_column(col, justify="right" if col != "path" else "left")
    for name, values in (("emulator -> agent -> Chromium page (rendered)", browser),
                         ("baseline: emulator -> agent -> SSE client", sse)):
        table.add_row(name, f"{statistics.median(values):.0f}", f"{pct(values, 95):.0f}", f"{max(values):.0f}")
    console.print(table)
    p95 = pct(browser, 95)
    console.print(f"target p95 < {TARGET_MS:.0f} ms: {'met' if p95 < TARGET_MS else 'MISSED'} ({p95:.0f} ms)")
    return 0 if p95 < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
