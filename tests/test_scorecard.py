"""The scorecard renders a run's report as terminal tables and one offline HTML page."""

import copy
import json
import re
from html.parser import HTMLParser

from rich.console import Console

from simulator import scorecard

HOSTILE = "<script>alert(1)</script>"
START = 1775003400000  # 2026-04-01 00:30:00 UTC = 08:30:00 in Shanghai


def make_report():
    return {
        "terminals": 20, "days": 7, "seed": 1, "speed": 6720.0,
        "virtual_start_ms": START, "virtual_end_ms": START + 7 * 86_400_000, "wall_s": 95.2,
        "sent": 4210, "stored": 4207, "lost": 3, "duplicated": 0, "altered": 0, "drained": True,
        "sales": {"approve": 3100, "partial": 12, "refuse": 540, "online": 3300, "offline": 352, "errors": 0},
        "detection": {
            "split_purchase": {"injected": 3, "detected": 3, "missed": 0, "false_alarms": 0,
                               "precision": 1.0, "recall": 1.0, "deterministic": True},
            "banned_product_sold": {"injected": 4, "detected": 3, "missed": 1, "false_alarms": 0,
                                    "precision": 1.0, "recall": 0.75, "deterministic": True},
            "top_buyer": {"injected": 2, "detected": 0, "missed": 2, "false_alarms": 0,
                          "precision": None, "recall": 0.0, "deterministic": False},
            "sale_outside_hours": {"injected": 5, "detected": 5, "missed": 0, "false_alarms": 1,
                                   "precision": 5 / 6, "recall": 1.0, "deterministic": True},
        },
        "injections": [
            {"kind": "split_purchase", "at_ms": START, "shop": HOSTILE, "terminal": "T330113001",
             "subject": "S0001", "expect": ["split_purchase"], "detected": True, "note": "three bags & more"},
            {"kind": "banned_product_sold", "at_ms": START + 3_600_000, "shop": "临平农资店", "terminal": "T330113002",
             "subject": None, "expect": ["banned_product_sold"], "detected": False, "note": ""},
        ],
        "faults": [{"kind": "broker_restart", "at_ms": START + 7_200_000, "until_ms": START + 7_230_000,
                    "terminal": None, "note": "mosquitto killed"}],
        "authorization_ms": {"p50": 4.1, "p90": 7.0, "p99": 20.3, "max": 80.0, "samples": 3300,
                             "histogram": [[1, 10], [2, 400], [5, 2000], [10, 700], [50, 180], [100, 10]]},
        "throughput": {"records_per_s": 44.2, "series": [[0.0, 0], [1.0, 40], [2.0, 95], [3.0, 130]]},
        "per_day": [{"date": "2026-04-01", "sales": 500, "refusals": 60, "violations": 4},
                    {"date": "2026-04-02", "sales": 620, "refusals": 71, "violations": 2}],
        "gateway": {"cpu_s": 120.5, "rss_mb": 210.0}, "terminal_rss_mb": 3.2,
    }


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Checker(HTMLParser):
    """Every tag closed in order; counts tags and collects text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.tags, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(page):
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.stack == [], (checker.errors, checker.stack)
    return checker


def test_html_names_every_kind_and_the_headline_figures(tmp_path):
    path = scorecard.write_html(make_report(), tmp_path / "out" / "scorecard.html")
    page = path.read_text(encoding="utf-8")
    text = "".join(parse(page).text)
    for kind in make_report()["detection"]:
        assert kind in text
    for figure in ("4,210", "4,207", "44.2", "120.5", "210", "3.2", "75.0%", "召回率", "Recall", "销售禁用农药"):
        assert figure in text, figure
    assert "未通过" in text and "FAIL" in text


def test_html_is_self_contained_and_well_formed():
    page = scorecard.render_html(make_report())
    checker = parse(page)
    names = {tag for tag, _ in checker.tags}
    assert not names & {"script", "link", "img", "iframe", "object"}
    assert not any("src" in attrs or "href" in attrs for _, attrs in checker.tags)
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page


def test_detection_chart_has_one_bar_per_kind_for_injected_and_detected():
    report = make_report()
    tags = parse(scorecard.render_html(report)).tags
    assert sum(1 for tag, _ in tags if tag == "svg") >= 4
    bars = [attrs for tag, attrs in tags if tag == "rect" and attrs.get("data-chart") == "detection"]
    for series in ("injected", "detected"):
        kinds = [a["data-kind"] for a in bars if a["data-series"] == series]
        assert kinds == list(report["detection"])
    per_day = [a for tag, a in tags if tag == "rect" and a.get("data-chart") == "per_day"]
    assert len(per_day) == 2 * 3
    latency = [a for tag, a in tags if tag == "rect" and a.get("data-chart") == "latency"]
    assert len(latency) == len(report["authorization_ms"]["histogram"])


def test_hostile_text_from_the_report_is_escaped():
    report = make_report()
    report["detection"][HOSTILE] = {"injected": 1, "detected": 1, "missed": 0, "false_alarms": 0,
                                    "precision": 1.0, "recall": 1.0, "deterministic": False}
    report["faults"][0]["note"] = '"><svg onload=alert(1)>'
    page = scorecard.render_html(report)
    assert HOSTILE not in page and "<svg onload" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    checker = parse(page)
    assert "script" not in {tag for tag, _ in checker.tags}
    assert not any(name.startswith("on") for _, attrs in checker.tags for name in attrs)
    assert HOSTILE in "".join(checker.text)


def test_injection_times_are_shown_in_shanghai_local_time():
    text = "".join(parse(scorecard.render_html(make_report())).text)
    assert "2026-04-01 08:30:00" in text and "2026-04-01 09:30:00" in text
    assert "10:30:30" in text  # the broker restart's end


def test_report_without_optional_sections_still_renders(tmp_path):
    report = {key: make_report()[key] for key in ("sent", "stored", "lost", "duplicated")}
    parse(scorecard.render_html(report))
    parse(scorecard.render_html({}))
    console = Console(record=True, width=160)
    for table in scorecard.tables(report):
        console.print(table)
    assert "无数据" in console.export_text()


def test_terminal_tables_show_lost_count_recall_and_verdict():
    console = Console(record=True, width=160)
    for table in scorecard.tables(make_report()):
        console.print(table)
    text = console.export_text()
    assert "丢失 lost" in text and re.search(r"│\s+4,210 │\s+4,207 │\s+3 │", text)
    assert "75.0%" in text and "召回率 recall" in text
    assert "FAIL" in text and "3 records lost" in text
    assert "44.2" in text and "120.5" in text and "broker_restart" in text


def test_deterministic_misses_and_false_alarms_fail_but_statistical_kinds_do_not():
    report = make_report()
    report["lost"] = 0
    failed = " ".join(en for _, en in scorecard.failures(report))
    assert "banned_product_sold" in failed and "sale_outside_hours" in failed
    assert "top_buyer" not in failed and "split_purchase" not in failed
    page = scorecard.render_html(report)
    assert re.search(r'<tr class="bad" data-kind="banned_product_sold">', page)
    assert not re.search(r'<tr class="bad" data-kind="top_buyer">', page)

    clean = copy.deepcopy(report)
    for row in clean["detection"].values():
        if row["deterministic"]:
            row.update(missed=0, false_alarms=0, detected=row["injected"], recall=1.0, precision=1.0)
    assert scorecard.failures(clean) == []
    assert "通过" in scorecard.render_html(clean)


def test_cli_prints_the_tables_and_writes_the_html(tmp_path, capsys):
    from protocols.cli import dispatch
    from simulator.__main__ import COMMANDS

    path = tmp_path / "report.json"
    path.write_text(json.dumps(make_report()), encoding="utf-8")
    out = tmp_path / "scorecard.html"
    assert dispatch("python -m simulator", COMMANDS, ["scorecard", str(path), "--html", str(out)]) == 0
    assert "split_purchase" in capsys.readouterr().out
    parse(out.read_text(encoding="utf-8"))
    assert dispatch("python -m simulator", COMMANDS, ["scorecard", str(path), "--strict"]) == 1
    assert dispatch("python -m simulator", COMMANDS, ["scorecard", str(tmp_path / "missing.json")]) == 2
