"""Notifications to inspectors: a case assigned to them, escalated to them, or
past its deadline at the district (where nothing escalates further), and a
case opened with nobody to assign it to, reach them in the chat the bureau already uses, through a group robot's webhook
(DingTalk 钉钉 or WeCom 企业微信), with the inspector @-mentioned by mobile.

Durable: `collect` reads `case_events` behind a cursor and queues one row per
message in `notifications` (gateway/store/notifications.py) in the same
transaction that moves the cursor, so a crash never loses or doubles one;
`Sender` delivers the queue and retries each failure with capped exponential
back-off until the robot answers `errcode: 0`. A robot that is misconfigured
shows up as rows with attempts and the robot's own error text, never as
silence.

What goes into a third-party chat is kept to what an inspector needs to go:
the case number, the shop by name, the findings in words, the subject's
registry id (no name, no ID number: the dashboard shows those to whom may see
them), the deadline in Beijing time and a link to the case page.

It runs in the supervision leader (gateway/cli/supervision_process.py,
`LeaderWork`), on a connection of its own. The configuration is a TOML file
(`gateway run|supervise --notify FILE`):

    [notify]
    url = "https://oapi.dingtalk.com/robot/send?access_token=..."
    format = "dingtalk"                 # or "wecom"
    secret_env = "GATEWAY_NOTIFY_SECRET"  # DingTalk 加签: the variable holding the secret, if the robot has one
    dashboard = "https://jg.example.gov.cn/"   # links to the case page, if set
    [notify.mobiles]                    # user name -> mobile, for the @-mention
    zhang = "13800000000"
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gateway.store import cases, grid, notifications, transaction, watermarks
from protocols import reasons

log = logging.getLogger(__name__)

FORMATS = ("dingtalk", "wecom")
KINDS = {"opened": "新案件待指派", "assigned": "新案件待核查", "escalated": "案件升级，请处理", "overdue": "案件已超期"}
LEVEL_ZH = {"village": "村社", "town": "镇街", "district": "区县"}
BEIJING_MS = 8 * 3_600_000
BASE_BACKOFF_MS, MAX_BACKOFF_MS = 5_000, 3_600_000
# Case events are written by the sweep and by users' actions in the API, each
# in its own transaction: on PostgreSQL an event id can become visible after a
# higher one. So each pass looks this many events behind its cursor again
# (`dedup` keeps a message from being queued twice).
LOOKBACK = 1000


class NotifyConfigError(ValueError):
    pass


@dataclass(frozen=True)
class NotifyConfig:
    url: str
    format: str = "dingtalk"
    secret: str | None = None
    dashboard: str | None = None
    mobiles: dict = field(default_factory=dict)


def load(path: str | Path) -> NotifyConfig:
    """The `[notify]` table of `path`; a bad value names the key and the file."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text("utf-8")).get("notify")
    except OSError as err:
        raise NotifyConfigError(f"cannot read {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise NotifyConfigError(f"{path}: {err}") from None
    if not isinstance(table, dict):
        raise NotifyConfigError(f"{path}: no [notify] table")
    unknown = sorted(set(table) - {"url", "format", "secret_env", "dashboard", "mobiles"})
    if unknown:
        raise NotifyConfigError(f"{path}: unknown key notify.{unknown[0]}")
    url = table.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise NotifyConfigError(f"{path}: notify.url must be the robot's http(s):// webhook URL")
    fmt = table.get("format", "dingtalk")
    if fmt not in FORMATS:
        raise NotifyConfigError(f"{path}: notify.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    secret = None
    if "secret_env" in table:
        secret = os.environ.get(str(table["secret_env"]))
        if not secret:
            raise NotifyConfigError(f"{path}: notify.secret_env names ${table['secret_env']}, which is not set")
    dashboard = table.get("dashboard")
    if dashboard is not None and (not isinstance(dashboard, str) or not dashboard.startswith(("http://", "https://"))):
        raise NotifyConfigError(f"{path}: notify.dashboard must be an http(s):// URL")
    mobiles = table.get("mobiles", {})
    if not isinstance(mobiles, dict) or not all(isinstance(v, str) and v.isdigit() and 5 <= len(v) <= 15
                                                for v in mobiles.values()):
        raise NotifyConfigError(f"{path}: notify.mobiles maps user names to mobile numbers (digits)")
    return NotifyConfig(url, fmt, secret, dashboard.rstrip("/") + "/" if dashboard else None, dict(mobiles))


# -- what to say: queued by the sweep

def local_time(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime((ms + BEIJING_MS) / 1000))


def message(conn, case: dict, kind: str, recipient: str | None, cfg: NotifyConfig | None) -> dict:
    shop = grid.shop(conn, case["shop"])
    findings = "；".join(reasons.text(code) for code in (case["codes"] or "").split(",") if code)
    title = "%s #%d" % (KINDS[kind], case["id"])
    lines = ["#### %s" % title,
             "- 门店：%s" % (shop.name if shop else case["shop"] or "—"),
             "- 问题：%s" % (findings or "—"),
             "- 购买主体：%s" % (case["subject"] or "—"),
             "- 层级：%s" % LEVEL_ZH.get(case["level"], case["level"]),
             "- 处理人：%s" % (recipient or "（未指派）"),
             "- 截止：%s（北京时间）" % local_time(case["deadline"])]
    if cfg and cfg.dashboard:
        lines.append("- [打开案件](%s#/case/%d)" % (cfg.dashboard, case["id"]))
    return {"title": title, "text": "\n".join(lines)}


def collect(conn, now: int, cfg: NotifyConfig | None = None, limit: int = 500) -> int:
    """Queue a message for every case assigned or escalated since the cursor
    (and opened, when nobody could be assigned), and for every district case
    past its deadline; returns how many were
    queued. In one transaction with the cursor."""
    queued = 0
    with transaction(conn):
        mark = watermarks.get(conn, "notify")
        events = cases.handover_events(conn, max(0, mark - LOOKBACK), limit + LOOKBACK)
        for event in events:
            case_id, action = event["case_id"], event["action"]
            assignee = event["detail"].get("assignee")
            case = cases.get(conn, case_id)
            if case is None or case["state"] == "closed":
                continue
            if action == "opened" and cases.was_assigned(conn, case_id):
                continue        # its `assigned` event says it, to the inspector
            queued += notifications.enqueue(conn, now, case_id, action, assignee, "event:%d" % event["id"],
                                            message(conn, case, action, assignee, cfg))
        if events and events[-1]["id"] > mark:
            watermarks.move(conn, "notify", events[-1]["id"])
        for case_id in cases.past_deadline_at_district(conn, now, limit):
            case = cases.get(conn, case_id)
            queued += notifications.enqueue(conn, now, case_id, "overdue", case["assignee"],
                                            "overdue:%d:%d" % (case_id, case["deadline"]),
                                            message(conn, case, "overdue", case["assignee"], cfg))
    return queued


# -- how to say it: the robots' formats

def robot_body(cfg: NotifyConfig, payload: dict, recipient: str | None) -> dict:
    mobile = cfg.mobiles.get(recipient) if recipient else None
    if cfg.format == "dingtalk":
        text = payload["text"] + ("\n\n@%s" % mobile if mobile else "")
        return {"msgtype": "markdown", "markdown": {"title": payload["title"], "text": text},
                "at": {"atMobiles": [mobile] if mobile else [], "isAtAll": False}}
    # WeCom: the @-mention by mobile exists for text messages only
    return {"msgtype": "text", "text": {"content": payload["text"].replace("#### ", ""),
                                        "mentioned_mobile_list": [mobile] if mobile else []}}


def signed_url(cfg: NotifyConfig, now_ms: int) -> str:
    """DingTalk's 加签: timestamp and base64 HMAC-SHA256 of "timestamp\\nsecret"
    under the secret, on the query string."""
    if cfg.format != "dingtalk" or not cfg.secret:
        return cfg.url
    digest = hmac.new(cfg.secret.encode(), f"{now_ms}\n{cfg.secret}".encode(), hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(digest).decode())
    return f"{cfg.url}{'&' if '?' in cfg.url else '?'}timestamp={now_ms}&sign={sign}"


def backoff_ms(attempts: int) -> int:
    return min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** min(attempts, 20))


class Sender:
    """Delivers the queue, oldest due first, on a thread of its own."""

    def __init__(self, conn, cfg: NotifyConfig, clock: Callable[[], int], timeout: float = 10.0):
        self.conn, self.cfg, self.clock, self.timeout = conn, cfg, clock, timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def post(self, body: dict) -> str | None:
        """None when the robot took it, else why not."""
        data = json.dumps(body, ensure_ascii=False).encode()
        request = urllib.request.Request(signed_url(self.cfg, self.clock()), data=data, method="POST",
                                         headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read(65536) or b"{}")
        except urllib.error.HTTPError as err:
            return f"HTTP {err.code}"
        except (urllib.error.URLError, OSError, TimeoutError, ValueError) as err:
            return f"{type(err).__name__}: {err}"
        if not isinstance(answer, dict) or answer.get("errcode", 0) != 0:
            return "robot said %s" % json.dumps(answer, ensure_ascii=False)[:300]
        return None

    def send_due(self) -> int:
        sent = 0
        for item in notifications.due(self.conn, self.clock()):
            error = self.post(robot_body(self.cfg, item["payload"], item["recipient"]))
            now = self.clock()
            with transaction(self.conn):
                if error is None:
                    notifications.mark_sent(self.conn, item["id"], now)
                else:
                    notifications.mark_failed(self.conn, item["id"], now + backoff_ms(item["attempts"]), error)
            if error is None:
                sent += 1
            else:
                log.warning("notification %d (case %d) not delivered: %s", item["id"], item["case_id"], error)
        return sent

    def run(self, idle: float = 1.0) -> None:
        """Queue what the case events call for, then deliver what is due, until stopped."""
        while not self._stop.is_set():
            try:
                collect(self.conn, self.clock(), self.cfg)
                self.send_due()
            except Exception:
                log.exception("notification sender failed")
            self._stop.wait(idle)

    def start(self, idle: float = 1.0) -> None:
        self._thread = threading.Thread(target=self.run, args=(idle,), name="notify", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.timeout + 5)
