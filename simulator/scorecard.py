"""The scorecard of a simulator run: what was injected, what the gateway caught,
what it cost. One report dict in, terminal tables (`tables`) or one HTML page
(`write_html`) out; `python -m simulator scorecard REPORT.json [--html OUT.html]`
renders a report written earlier by `python -m simulator run --report PATH`.

The report dict (built by the run; every key except the record counts is
optional, and a missing section renders as "无数据 no data"):

    {
     "terminals": 20, "days": 7, "seed": 1,
     "speed": 6720.0,                      # virtual seconds per real second
     "virtual_start_ms": ..., "virtual_end_ms": ..., "wall_s": 95.2,
     "sent": 4210, "stored": 4210, "lost": 0, "duplicated": 0, "altered": 0, "drained": true,
     "sales": {"approve": 3100, "partial": 12, "refuse": 540, "online": 3300, "offline": 352, "errors": 0},
     "detection": {"<violation code>": {"injected": 3, "detected": 3, "missed": 0, "false_alarms": 0,
                                        "precision": 1.0, "recall": 1.0, "deterministic": true}, ...},
     "injections": [{"kind": "split_purchase", "at_ms": ..., "shop": "...", "terminal": "...",
                     "subject": "S..." or null, "expect": ["split_purchase"], "detected": true, "note": "..."}],
     "faults": [{"kind": "broker_restart", "at_ms": ..., "until_ms": ..., "terminal": null, "note": "..."}],
     "authorization_ms": {"p50": 4.1, "p90": 7.0, "p99": 20.3, "max": 80.0, "samples": 3300,
                          "histogram": [[1, 10], [2, 400], [5, 2000], ...]},   # [upper bound ms, count]
     "throughput": {"records_per_s": 44.2, "series": [[0.0, 0], [1.0, 40], ...]},  # [real s, records stored]
     "per_day": [{"date": "2026-04-01", "sales": 500, "refusals": 60, "violations": 4}],
     "gateway": {"cpu_s": 120.5, "rss_mb": 210.0}, "terminal_rss_mb": 3.2
    }

`precision` is null when nothing was detected for a kind (and `recall` when
nothing was injected); the total row computes both from the summed counts
(precision = detected / (detected + false alarms), recall = detected / injected).

A *deterministic* kind is one whose rule is a plain function of the records
(a banned product sold, a sale outside opening hours): the gateway must catch
every injection and raise nothing else, so a recall below 1 or any false alarm
is a bug and shows red, and fails the verdict along with any lost, duplicated
or altered record. Statistical kinds (top buyers) are shown, not judged.

Virtual times are shown in Asia/Shanghai local time, a fixed UTC+8 (China has
kept no daylight saving since 1991), so the page needs no tz database.

The HTML page is self-contained (inline CSS and SVG, no script, no external
asset) so it can be mailed, archived with the run and opened offline; Chinese
first with English beside it. Every string that comes from the report is
escaped: shop names, ids and notes are data, not markup.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import math
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

SHANGHAI = dt.timezone(dt.timedelta(hours=8), "CST")
DASH = "—"

# Fault kinds the simulator injects; an unknown kind is shown by its code.
FAULT_LABELS = {
    "broker_restart": "消息服务器重启",
    "broker_stop": "消息服务器停机",
    "gateway_crash": "网关崩溃",
    "gateway_restart": "网关重启",
    "gateway_kill": "网关进程被杀",
    "network_partition": "网络中断",
    "network_cut": "网络中断",
    "partition": "网络中断",
    "terminal_kill": "终端被强制关闭",
    "power_loss": "终端断电",
    "terminal_power_loss": "终端断电",
    "disk_full": "磁盘已满",
    "clock_skew": "终端时钟偏差",
    "reader_fault": "读卡器故障",
    "slow_network": "网络缓慢",
}


# ---------------------------------------------------------------- figures

def _num(value) -> float | None:
    """A number from the report, or None (missing, null, or not a number)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value) -> int:
    number = _num(value)
    return int(number) if number is not None else 0


def _fmt(value, digits: int = 1) -> str:
    number = _num(value)
    if number is None:
        return DASH
    if number == int(number) and abs(number) < 1e15:
        return f"{int(number):,}"
    return f"{number:,.{digits}f}"


def _pct(value) -> str:
    number = _num(value)
    return DASH if number is None else f"{number * 100:.1f}%"


def _local(ms) -> str:
    """Epoch milliseconds as Asia/Shanghai local time."""
    number = _num(ms)
    if number is None:
        return DASH
    try:
        return dt.datetime.fromtimestamp(number / 1000, SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return str(ms)


def _duration(seconds) -> str:
    number = _num(seconds)
    if number is None:
        return DASH
    if number < 120:
        return f"{number:.1f} s"
    if number < 7200:
        return f"{number / 60:.1f} min"
    if number < 172800:
        return f"{number / 3600:.1f} h"
    return f"{number / 86400:.1f} d"


_labels_loaded = False


def kind_label(code: str) -> tuple[str, str]:
    """(zh, en) for a violation code from the reason catalogue; the code itself
    when unknown. The catalogue is filled by the modules that raise the codes;
    a scorecard of a saved report must still render if one of them won't import."""
    global _labels_loaded
    from protocols import reasons
    if not _labels_loaded:
        _labels_loaded = True
        for module in ("gateway.supervision.rules", "gateway.enforcement.quota", "protocols.envelope", "protocols.policy"):
            try:
                __import__(module)
            except Exception:  # noqa: BLE001 - labels are a nicety, never a reason to fail
                pass
    code = str(code)
    return reasons.text(code, "zh"), reasons.text(code, "en")


def _detection_rows(report: dict) -> list[tuple[str, dict]]:
    detection = report.get("detection") or {}
    if not isinstance(detection, dict):
        return []
    return [(str(code), row if isinstance(row, dict) else {}) for code, row in detection.items()]


def _deterministic_failure(row: dict) -> bool:
    if not row.get("deterministic"):
        return False
    recall = _num(row.get("recall"))
    return (recall is not None and recall < 1) or _int(row.get("false_alarms")) > 0 or _int(row.get("missed")) > 0


def _totals(rows: list[tuple[str, dict]]) -> dict:
    total = {key: sum(_int(row.get(key)) for _, row in rows)
             for key in ("injected", "detected", "missed", "false_alarms")}
    flagged = total["detected"] + total["false_alarms"]
    total["precision"] = total["detected"] / flagged if flagged else None
    total["recall"] = total["detected"] / total["injected"] if total["injected"] else None
    return total


def failures(report: dict) -> list[tuple[str, str]]:
    """What makes this run fail, as (zh, en) sentences; empty when it passes."""
    out = []
    for key, zh, en in (("lost", "丢失", "lost"), ("duplicated", "重复", "duplicated"),
                        ("altered", "被改写", "altered")):
        count = _int(report.get(key))
        if count:
            out.append((f"{count} 条记录{zh}", f"{count} records {en}"))
    if report.get("drained") is False:
        out.append(("终端待上传记录未清空", "terminal outboxes not drained"))
    for code, row in _detection_rows(report):
        if _deterministic_failure(row):
            out.append((f"确定性规则 {code}：漏报 {_int(row.get('missed'))}，误报 {_int(row.get('false_alarms'))}",
                        f"deterministic rule {code}: {_int(row.get('missed'))} missed, "
                        f"{_int(row.get('false_alarms'))} false alarms"))
    return out


# ---------------------------------------------------------------- terminal

def _count_cell(value, bad_when_nonzero: bool = True) -> Text:
    count = _int(value)
    style = ("bold red" if count else "green") if bad_when_nonzero else ""
    return Text(_fmt(value), style=style)


def tables(report: dict) -> list[Table]:
    """The scorecard as rich tables: records, sales, detection, performance, faults."""
    out = []
    fails = failures(report)
    records = Table(title="记录 Records", title_justify="left")
    for name in ("发送 sent", "入库 stored", "丢失 lost", "重复 duplicated", "改写 altered", "清空 drained"):
        records.add_column(name, justify="right")
    drained = report.get("drained")
    records.add_row(Text(_fmt(report.get("sent"))), Text(_fmt(report.get("stored"))),
                    _count_cell(report.get("lost")), _count_cell(report.get("duplicated")),
                    _count_cell(report.get("altered")),
                    Text(DASH if drained is None else ("是 yes" if drained else "否 no"),
                         style="" if drained is None else ("green" if drained else "bold red")))
    run = [f"{_fmt(report.get('terminals'))} 终端 terminals", f"{_fmt(report.get('days'))} 天 days",
           f"seed {_fmt(report.get('seed'))}", f"×{_fmt(report.get('speed'))}",
           f"{_duration(report.get('wall_s'))} wall"]
    records.caption = Text(" · ".join(run) + "\n", style="dim")
    records.caption.append(Text("未通过 FAIL: " + "; ".join(en for _, en in fails), style="bold red") if fails
                           else Text("通过 PASS", style="bold green"))
    records.caption_justify = "left"
    out.append(records)

    sales = report.get("sales")
    if isinstance(sales, dict):
        table = Table(title="销售 Sales", title_justify="left")
        keys = (("approve", "批准 approved"), ("partial", "部分 partial"), ("refuse", "拒绝 refused"),
                ("online", "在线 online"), ("offline", "离线 offline"), ("errors", "错误 errors"))
        for _, name in keys:
            table.add_column(name, justify="right")
        table.add_row(*[_count_cell(sales.get(k)) if k == "errors" else Text(_fmt(sales.get(k))) for k, _ in keys])
        out.append(table)

    rows = _detection_rows(report)
    detection = Table(title="违规检出 Detection (● 确定性规则 deterministic rule)", title_justify="left")
    detection.add_column("违规 kind", no_wrap=True)  # a code cut in two is unreadable; headers wrap instead
    for name, justify in (("●", "center"), ("注入 injected", "right"),
                          ("检出 detected", "right"), ("漏报 missed", "right"), ("误报 false alarms", "right"),
                          ("精确率 precision", "right"), ("召回率 recall", "right")):
        detection.add_column(name, justify=justify)
    for code, row in rows:
        style = "bold red" if _deterministic_failure(row) else ""
        detection.add_row(Text(code, style=style), Text("●" if row.get("deterministic") else ""),
                          Text(_fmt(row.get("injected"))), Text(_fmt(row.get("detected"))),
                          Text(_fmt(row.get("missed")), style=style), Text(_fmt(row.get("false_alarms")), style=style),
                          Text(_pct(row.get("precision"))), Text(_pct(row.get("recall")), style=style))
    if rows:
        total = _totals(rows)
        detection.add_section()
        detection.add_row(Text("合计 total", style="bold"), Text(""), *[Text(_fmt(total[k]), style="bold") for k in
                                                                       ("injected", "detected", "missed", "false_alarms")],
                          Text(_pct(total["precision"]), style="bold"), Text(_pct(total["recall"]), style="bold"))
    else:
        detection.add_row(Text("无数据 no data", style="dim"), *[Text("")] * 7)
    out.append(detection)

    perf = Table(title="性能 Performance", title_justify="left")
    perf.add_column("指标 measure")
    perf.add_column("值 value", justify="right")
    auth = report.get("authorization_ms") if isinstance(report.get("authorization_ms"), dict) else {}
    if auth:
        perf.add_row("授权延迟 authorization latency (ms) p50 / p90 / p99 / max",
                     " / ".join(_fmt(auth.get(k)) for k in ("p50", "p90", "p99", "max"))
                     + f"  (n={_fmt(auth.get('samples'))})")
    throughput = report.get("throughput") if isinstance(report.get("throughput"), dict) else {}
    if throughput:
        perf.add_row("网关吞吐 gateway throughput (records/s)", _fmt(throughput.get("records_per_s")))
    gateway = report.get("gateway") if isinstance(report.get("gateway"), dict) else {}
    if _num(gateway.get("cpu_s")) is not None:
        perf.add_row("网关 CPU gateway CPU (s)", _fmt(gateway.get("cpu_s")))
    if _num(gateway.get("peak_rss_mb", gateway.get("rss_mb"))) is not None:
        perf.add_row("网关内存峰值 gateway peak RSS (MB)", _fmt(gateway.get("peak_rss_mb", gateway.get("rss_mb"))))
    if _num(report.get("terminal_rss_mb")) is not None:
        perf.add_row("终端代理内存 terminal agent RSS (MB)", _fmt(report.get("terminal_rss_mb")))
    if not perf.rows:
        perf.add_row(Text("无数据 no data", style="dim"), "")
    out.append(perf)

    faults = [f for f in report.get("faults") or [] if isinstance(f, dict)]
    table = Table(title=f"注入故障 Faults injected: {len(faults)}", title_justify="left")
    table.add_column("故障 fault")
    table.add_column("次数 count", justify="right")
    counts: dict[str, int] = {}
    for fault in faults:
        counts[str(fault.get("kind"))] = counts.get(str(fault.get("kind")), 0) + 1
    for kind, count in counts.items():
        table.add_row(Text(f"{kind} {FAULT_LABELS.get(kind, '')}".rstrip()), str(count))
    if not counts:
        table.add_row(Text("无 none", style="dim"), "0")
    out.append(table)
    return out


def print_tables(report: dict, console: Console | None = None) -> None:
    console = console or Console()
    for table in tables(report):
        console.print(table)


# ---------------------------------------------------------------- SVG

def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** math.floor(math.log10(value))
    for mult in (1, 2, 2.5, 5, 10):
        if mult * step >= value:
            return mult * step
    return 10 * step


def _tick(value: float) -> str:
    if abs(value) >= 10000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


SERIES_COLOURS = ("#4c78a8", "#f58518", "#e45756", "#54a24b")


def _text_width(text: str) -> float:
    """Rough width at 11 px: CJK characters are square, Latin about half."""
    return sum(11.0 if ord(c) >= 0x2E80 else 6.2 for c in text)


def _legend(series: list[tuple[str, str]], x: float, y: float) -> list[str]:
    out = []
    for name, colour in series:
        out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{x + 14:.1f}" y="{y:.1f}" class="lg">{_e(name)}</text>')
        x += 14 + _text_width(name) + 16
    return out


def _svg(width: float, height: float, label: str, parts: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="{_e(label)}">'
            f'<title>{_e(label)}</title>' + "".join(parts) + "</svg>")


def _empty() -> str:
    return '<p class="empty">无数据 No data</p>'


def vbars(categories: list[str], series: list[tuple[str, list[float]]], label: str,
          ylabel: str = "", width: int = 760, height: int = 280, chart: str = "") -> str:
    """Vertical grouped bars: one group per category, one bar per series in it."""
    if not categories or not series:
        return _empty()
    x0, x1, y0, y1 = 56.0, width - 12.0, 34.0, height - 42.0
    top = _nice_ceiling(max([v for _, values in series for v in values] + [0]))
    parts = _legend([(name, SERIES_COLOURS[j % 4]) for j, (name, _) in enumerate(series)], x0, 16)
    for i in range(6):
        value = top * i / 5
        y = y1 - (y1 - y0) * i / 5
        parts.append(f'<line x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" class="ax" text-anchor="end">{_tick(value)}</text>')
    if ylabel:
        parts.append(f'<text x="12" y="{(y0 + y1) / 2:.1f}" class="ax" text-anchor="middle" '
                     f'transform="rotate(-90 12 {(y0 + y1) / 2:.1f})">{_e(ylabel)}</text>')
    group = (x1 - x0) / len(categories)
    bar = group * 0.8 / len(series)
    every = max(1, math.ceil(len(categories) * 56 / (x1 - x0)))
    for i, category in enumerate(categories):
        for j, (name, values) in enumerate(series):
            value = values[i] if i < len(values) else 0
            h = (y1 - y0) * value / top
            x = x0 + i * group + group * 0.1 + j * bar
            parts.append(f'<rect x="{x:.1f}" y="{y1 - h:.1f}" width="{max(bar - 1, 1):.1f}" height="{h:.1f}" '
                         f'fill="{SERIES_COLOURS[j % 4]}" class="bar" data-chart="{_e(chart)}" '
                         f'data-series="{_e(name)}" data-category="{_e(category)}">'
                         f'<title>{_e(category)} · {_e(name)}: {_fmt(value)}</title></rect>')
        if i % every == 0:
            parts.append(f'<text x="{x0 + (i + 0.5) * group:.1f}" y="{y1 + 16}" class="ax" '
                         f'text-anchor="middle">{_e(category)}</text>')
    parts.append(f'<line x1="{x0}" x2="{x1}" y1="{y1}" y2="{y1}" class="axis"/>')
    return _svg(width, height, label, parts)


def hbars(categories: list[str], series: list[tuple[str, str, list[float]]], label: str,
          width: int = 760, chart: str = "") -> str:
    """Horizontal grouped bars, for long category names (violation codes).
    series: (name, data-series key, values); every category gets a bar in every
    series, zero-length when the value is 0, so a test can count them."""
    if not categories or not series:
        return _empty()
    x0, x1, y0 = 230.0, width - 48.0, 30.0
    row = 8 + 13 * len(series)
    height = y0 + row * len(categories) + 26
    top = _nice_ceiling(max([v for _, _, values in series for v in values] + [0]))
    parts = _legend([(name, SERIES_COLOURS[j % 4]) for j, (name, _, _) in enumerate(series)], x0, 16)
    y_end = y0 + row * len(categories)
    for i in range(6):
        x = x0 + (x1 - x0) * i / 5
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0}" y2="{y_end}" class="grid"/>')
        parts.append(f'<text x="{x:.1f}" y="{y_end + 16}" class="ax" text-anchor="middle">{_tick(top * i / 5)}</text>')
    for i, category in enumerate(categories):
        y = y0 + i * row + 4
        zh, en = kind_label(category)
        parts.append(f'<text x="{x0 - 8}" y="{y + row / 2:.1f}" class="ax" text-anchor="end">{_e(category)}'
                     f'<title>{_e(zh)} {_e(en)}</title></text>')
        for j, (name, key, values) in enumerate(series):
            value = values[i] if i < len(values) else 0
            w = (x1 - x0) * value / top
            by = y + j * 13
            parts.append(f'<rect x="{x0}" y="{by:.1f}" width="{w:.1f}" height="11" fill="{SERIES_COLOURS[j % 4]}" '
                         f'class="bar" data-chart="{_e(chart)}" data-series="{_e(key)}" data-kind="{_e(category)}">'
                         f'<title>{_e(category)} · {_e(name)}: {_fmt(value)}</title></rect>')
            parts.append(f'<text x="{x0 + w + 4:.1f}" y="{by + 10:.1f}" class="val">{_fmt(value)}</text>')
    parts.append(f'<line x1="{x0}" x2="{x0}" y1="{y0}" y2="{y_end}" class="axis"/>')
    return _svg(width, height, label, parts)


def line(points: list[tuple[float, float]], label: str, xlabel: str, ylabel: str,
         width: int = 760, height: int = 280) -> str:
    """A line through (x, y) points, x and y from zero up."""
    if not points:
        return _empty()
    x0, x1, y0, y1 = 64.0, width - 16.0, 16.0, height - 44.0
    xtop = _nice_ceiling(max(x for x, _ in points))
    ytop = _nice_ceiling(max(y for _, y in points))
    parts = []
    for i in range(6):
        y = y1 - (y1 - y0) * i / 5
        x = x0 + (x1 - x0) * i / 5
        parts.append(f'<line x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" class="ax" text-anchor="end">{_tick(ytop * i / 5)}</text>')
        parts.append(f'<text x="{x:.1f}" y="{y1 + 16}" class="ax" text-anchor="middle">{_tick(xtop * i / 5)}</text>')
    coords = " ".join(f"{x0 + (x1 - x0) * max(x, 0) / xtop:.1f},{y1 - (y1 - y0) * max(y, 0) / ytop:.1f}"
                      for x, y in points)
    parts.append(f'<polyline points="{coords}" fill="none" stroke="{SERIES_COLOURS[0]}" stroke-width="2" '
                 f'class="series"/>')
    parts.append(f'<line x1="{x0}" x2="{x1}" y1="{y1}" y2="{y1}" class="axis"/>')
    parts.append(f'<line x1="{x0}" x2="{x0}" y1="{y0}" y2="{y1}" class="axis"/>')
    parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{height - 8}" class="ax" text-anchor="middle">{_e(xlabel)}</text>')
    parts.append(f'<text x="14" y="{(y0 + y1) / 2:.1f}" class="ax" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(y0 + y1) / 2:.1f})">{_e(ylabel)}</text>')
    return _svg(width, height, label, parts)


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,-apple-system,"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif;
 margin:24px auto;max-width:1100px;padding:0 16px;color:#222;background:#fff}
h1{font-size:1.6em;margin-bottom:4px} h2{font-size:1.2em;margin-top:32px;border-bottom:1px solid #ddd}
.en{color:#666;font-weight:normal} .run{color:#555;margin:0 0 12px}
.verdict{padding:8px 12px;border-radius:4px;font-weight:bold;margin:12px 0}
.verdict.pass{background:#e6f4ea;color:#1e6b34} .verdict.fail{background:#fdecea;color:#a61b1b}
.verdict ul{margin:4px 0 0;font-weight:normal}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:110px}
.card .v{font-size:1.5em;font-weight:bold} .card .k{color:#555;font-size:.85em}
.card.ok .v{color:#1e7b3a} .card.bad{border-color:#d33} .card.bad .v{color:#c62020}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.bad td{background:#fdecea;color:#a61b1b;font-weight:bold} tr.total td{font-weight:bold;background:#fafafa}
.yes{color:#1e7b3a} .no{color:#c62020;font-weight:bold} .empty{color:#888}
figure{margin:16px 0} figcaption{color:#444;margin-bottom:4px}
svg{max-width:100%;height:auto;font-size:11px}
svg .grid{stroke:#eee} svg .axis{stroke:#888} svg .ax,svg .val,svg .lg{fill:#444}
footer{color:#888;font-size:.8em;margin-top:32px}
"""


def _bi(zh: str, en: str) -> str:
    return f'{_e(zh)} <span class="en">{_e(en)}</span>'


def _table(headers: list[tuple[str, str]], rows: list[str]) -> str:
    if not rows:
        return _empty()
    head = "".join(f"<th>{_bi(zh, en)}</th>" for zh, en in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _card(zh: str, en: str, value, state: str = "") -> str:
    cls = f"card {state}".strip()
    return f'<div class="{cls}"><div class="v">{_e(value)}</div><div class="k">{_bi(zh, en)}</div></div>'


def _zero_state(value) -> str:
    return "bad" if _int(value) else "ok"


def _headline(report: dict) -> str:
    cards = [_card("发送", "Sent", _fmt(report.get("sent"))),
             _card("入库", "Stored", _fmt(report.get("stored"))),
             _card("丢失", "Lost", _fmt(report.get("lost")), _zero_state(report.get("lost"))),
             _card("重复", "Duplicated", _fmt(report.get("duplicated")), _zero_state(report.get("duplicated")))]
    if "altered" in report:
        cards.append(_card("改写", "Altered", _fmt(report.get("altered")), _zero_state(report.get("altered"))))
    if "drained" in report:
        drained = bool(report.get("drained"))
        cards.append(_card("已清空", "Drained", "是 yes" if drained else "否 no", "ok" if drained else "bad"))
    sales = report.get("sales") if isinstance(report.get("sales"), dict) else {}
    for key, zh, en in (("approve", "批准", "Approved"), ("partial", "部分批准", "Partial"),
                        ("refuse", "拒绝", "Refused"), ("online", "在线决定", "Online"),
                        ("offline", "离线决定", "Offline")):
        if key in sales:
            cards.append(_card(zh, en, _fmt(sales.get(key))))
    if "errors" in sales:
        cards.append(_card("错误", "Errors", _fmt(sales.get("errors")), _zero_state(sales.get("errors"))))
    rows = _detection_rows(report)
    if rows:
        total = _totals(rows)
        cards.append(_card("召回率", "Recall", _pct(total["recall"])))
        cards.append(_card("精确率", "Precision", _pct(total["precision"])))
    auth = report.get("authorization_ms") if isinstance(report.get("authorization_ms"), dict) else {}
    for key in ("p50", "p99"):
        if key in auth:
            cards.append(_card(f"授权延迟 {key}", f"Authorization {key} (ms)", _fmt(auth.get(key))))
    throughput = report.get("throughput") if isinstance(report.get("throughput"), dict) else {}
    if "records_per_s" in throughput:
        cards.append(_card("吞吐（条/秒）", "Records/s", _fmt(throughput.get("records_per_s"))))
    gateway = report.get("gateway") if isinstance(report.get("gateway"), dict) else {}
    if _num(gateway.get("cpu_s")) is not None:
        cards.append(_card("网关 CPU（秒）", "Gateway CPU s", _fmt(gateway.get("cpu_s"))))
    if _num(gateway.get("peak_rss_mb", gateway.get("rss_mb"))) is not None:
        cards.append(_card("网关内存峰值（MB）", "Gateway peak RSS MB",
                           _fmt(gateway.get("peak_rss_mb", gateway.get("rss_mb")))))
    if _num(report.get("terminal_rss_mb")) is not None:
        cards.append(_card("终端内存（MB）", "Terminal RSS MB", _fmt(report.get("terminal_rss_mb"))))
    cards.append(_card("注入故障", "Faults", _fmt(len([f for f in report.get("faults") or [] if isinstance(f, dict)]))))
    return f'<div class="cards">{"".join(cards)}</div>'


def _detection_table(report: dict) -> str:
    rows = _detection_rows(report)
    out = []
    for code, row in rows:
        zh, en = kind_label(code)
        cls = ' class="bad"' if _deterministic_failure(row) else ""
        out.append(f'<tr{cls} data-kind="{_e(code)}"><td>{_e(zh)}<br><code>{_e(code)}</code>'
                   f'{"" if en == code else " <span class=en>" + _e(en) + "</span>"}</td>'
                   f'<td>{"● 是 yes" if row.get("deterministic") else "否 no"}</td>'
                   + "".join(f'<td class="n">{_fmt(row.get(k))}</td>'
                             for k in ("injected", "detected", "missed", "false_alarms"))
                   + f'<td class="n">{_pct(row.get("precision"))}</td><td class="n">{_pct(row.get("recall"))}</td></tr>')
    if rows:
        total = _totals(rows)
        out.append('<tr class="total"><td>合计 <span class="en">Total</span></td><td></td>'
                   + "".join(f'<td class="n">{_fmt(total[k])}</td>' for k in ("injected", "detected", "missed",
                                                                             "false_alarms"))
                   + f'<td class="n">{_pct(total["precision"])}</td><td class="n">{_pct(total["recall"])}</td></tr>')
    return _table([("违规类型", "Kind"), ("确定性规则", "Deterministic"), ("注入", "Injected"),
                   ("检出", "Detected"), ("漏报", "Missed"), ("误报", "False alarms"),
                   ("精确率", "Precision"), ("召回率", "Recall")], out)


def _figure(zh: str, en: str, svg: str, note: str = "") -> str:
    note = f' <span class="en">{_e(note)}</span>' if note else ""
    return f"<figure><figcaption>{_bi(zh, en)}{note}</figcaption>{svg}</figure>"


def _charts(report: dict) -> str:
    out = []
    rows = _detection_rows(report)
    codes = [code for code, _ in rows]
    out.append(_figure("各类违规注入与检出", "Injected vs detected per kind", hbars(
        codes, [("注入 injected", "injected", [_int(r.get("injected")) for _, r in rows]),
                ("检出 detected", "detected", [_int(r.get("detected")) for _, r in rows]),
                ("误报 false alarms", "false_alarms", [_int(r.get("false_alarms")) for _, r in rows])],
        "injected vs detected per kind", chart="detection")))

    auth = report.get("authorization_ms") if isinstance(report.get("authorization_ms"), dict) else {}
    buckets, counts, previous = [], [], None
    for entry in auth.get("histogram") or []:
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            continue
        bound = _num(entry[0])
        buckets.append(f"≤{_fmt(bound)}" if bound is not None else f">{_fmt(previous)}")
        counts.append(_int(entry[1]))
        previous = bound if bound is not None else previous
    note = " / ".join(f"{k} {_fmt(auth.get(k))}" for k in ("p50", "p90", "p99", "max") if k in auth)
    out.append(_figure("授权延迟分布（毫秒）", "Authorization latency histogram (ms)", vbars(
        buckets, [("次数 count", counts)], "authorization latency histogram", ylabel="次数 count",
        chart="latency"), note + (" ms" if note else "")))

    throughput = report.get("throughput") if isinstance(report.get("throughput"), dict) else {}
    points = []
    for entry in throughput.get("series") or []:
        if isinstance(entry, (list, tuple)) and len(entry) == 2 and None not in (_num(entry[0]), _num(entry[1])):
            points.append((_num(entry[0]), _num(entry[1])))
    out.append(_figure("网关入库记录随时间", "Records stored over time", line(
        points, "records stored over time", "实际时间（秒）real time (s)", "已入库 stored"),
        f"{_fmt(throughput.get('records_per_s'))} records/s" if "records_per_s" in throughput else ""))

    days = [d for d in report.get("per_day") or [] if isinstance(d, dict)]
    out.append(_figure("每个模拟日的销售、拒绝与违规", "Sales, refusals and violations per simulated day", vbars(
        [str(d.get("date", ""))[5:] or str(d.get("date", "")) for d in days],
        [("销售 sales", [_int(d.get("sales")) for d in days]),
         ("拒绝 refusals", [_int(d.get("refusals")) for d in days]),
         ("违规 violations", [_int(d.get("violations")) for d in days])],
        "sales, refusals and violations per day", chart="per_day")))
    return "".join(out)


def _injections(report: dict) -> str:
    rows = []
    for i, inj in enumerate([x for x in report.get("injections") or [] if isinstance(x, dict)], 1):
        detected = inj.get("detected")
        mark = ('<td class="yes">是 yes</td>' if detected else '<td class="no">否 no</td>') if detected is not None \
            else f"<td>{DASH}</td>"
        expect = inj.get("expect") or []
        expect = ", ".join(str(x) for x in expect) if isinstance(expect, (list, tuple)) else str(expect)
        rows.append(f'<tr><td class="n">{i}</td><td>{_e(inj.get("kind"))}</td><td>{_e(_local(inj.get("at_ms")))}</td>'
                    f'<td>{_e(inj.get("shop") or DASH)}</td><td>{_e(inj.get("terminal") or DASH)}</td>'
                    f'<td>{_e(inj.get("subject") or DASH)}</td><td>{_e(expect)}</td>{mark}'
                    f'<td>{_e(inj.get("note") or "")}</td></tr>')
    return _table([("#", ""), ("类型", "Kind"), ("虚拟时间（北京时间）", "Virtual time, Asia/Shanghai"),
                   ("门店", "Shop"), ("终端", "Terminal"), ("主体", "Subject"), ("预期代码", "Expected codes"),
                   ("检出", "Detected"), ("备注", "Note")], rows)


def _faults(report: dict) -> str:
    rows = []
    for fault in [x for x in report.get("faults") or [] if isinstance(x, dict)]:
        kind = str(fault.get("kind"))
        start, until = _num(fault.get("at_ms")), _num(fault.get("until_ms"))
        length = _duration((until - start) / 1000) if start is not None and until is not None else DASH
        rows.append(f'<tr><td>{_e(FAULT_LABELS.get(kind, ""))} <code>{_e(kind)}</code></td>'
                    f'<td>{_e(_local(start))}</td><td>{_e(_local(until))}</td><td>{_e(length)}</td>'
                    f'<td>{_e(fault.get("terminal") or "全部 all")}</td><td>{_e(fault.get("note") or "")}</td></tr>')
    return _table([("故障", "Fault"), ("开始（北京时间）", "Start, Asia/Shanghai"), ("结束", "End"),
                   ("时长", "Duration"), ("终端", "Terminal"), ("备注", "Note")], rows)


def _run_line(report: dict) -> str:
    parts = []
    for key, zh, en in (("terminals", "终端", "terminals"), ("days", "天", "days"), ("seed", "种子", "seed")):
        if key in report:
            parts.append(f"{_e(_fmt(report.get(key)))} {_bi(zh, en)}")
    if "speed" in report:
        parts.append(f"{_bi('加速', 'speed')} ×{_e(_fmt(report.get('speed')))}")
    if "virtual_start_ms" in report or "virtual_end_ms" in report:
        parts.append(f"{_bi('虚拟时间', 'virtual time')} {_e(_local(report.get('virtual_start_ms')))} → "
                     f"{_e(_local(report.get('virtual_end_ms')))}")
    if "wall_s" in report:
        parts.append(f"{_bi('实际用时', 'wall time')} {_e(_duration(report.get('wall_s')))}")
    return " · ".join(parts)


def render_html(report: dict) -> str:
    """The scorecard as one self-contained HTML page."""
    fails = failures(report)
    if fails:
        items = "".join(f"<li>{_e(zh)} <span class=en>{_e(en)}</span></li>" for zh, en in fails)
        verdict = f'<div class="verdict fail">未通过 <span class="en">FAIL</span><ul>{items}</ul></div>'
    else:
        verdict = '<div class="verdict pass">通过 <span class="en">PASS</span></div>'
    body = [
        f"<h1>{_bi('模拟运行成绩单', 'Simulator scorecard')}</h1>",
        f'<p class="run">{_run_line(report)}</p>', verdict,
        f"<h2>{_bi('总览', 'Headline figures')}</h2>", _headline(report),
        f"<h2>{_bi('违规检出', 'Detection')}</h2>",
        '<p class="run">● 确定性规则：必须全部检出且没有误报 '
        '<span class="en">deterministic rule: every injection must be caught, with no false alarm</span></p>',
        _detection_table(report),
        f"<h2>{_bi('图表', 'Charts')}</h2>", _charts(report),
        f"<h2>{_bi('注入的违规', 'Injections')}</h2>", _injections(report),
        f"<h2>{_bi('注入的故障', 'Faults')}</h2>", _faults(report),
        "<footer>python -m simulator scorecard · 时间均为北京时间 (UTC+8) "
        '<span class="en">times are Asia/Shanghai local time</span></footer>',
    ]
    return ('<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>模拟运行成绩单 Simulator scorecard</title><style>{CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


def write_html(report: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    return path


# ---------------------------------------------------------------- CLI

def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description="render a simulator run's JSON report as tables and HTML")
    parser.add_argument("report", help="the JSON written by `python -m simulator run --report`")
    parser.add_argument("--html", help="also write the HTML scorecard here")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 if anything was lost, duplicated or altered, or a deterministic rule failed")
    args = parser.parse_args(argv)
    try:
        report = json.loads(Path(args.report).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"{prog}: cannot read {args.report}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(report, dict):
        print(f"{prog}: {args.report} is not a JSON object", file=sys.stderr)
        return 2
    console = Console()
    print_tables(report, console)
    if args.html:
        console.print(Text(f"HTML: {write_html(report, args.html)}"), soft_wrap=True)
    return 1 if args.strict and failures(report) else 0
