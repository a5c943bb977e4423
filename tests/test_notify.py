"""Inspectors are notified of new, escalated and overdue cases through a group
robot's webhook (DingTalk and WeCom formats), from a durable outbox that
retries: against a real HTTP receiver on loopback that checks DingTalk's
signature, fails on purpose, and records what it got. On both backends."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.store import connect, notifications, users, violations
from gateway.supervision import cases, grid, notify
from gateway.supervision.rules import config
from tests.support.store_backends import backend_db  # noqa: F401 - a fixture
from tests.support.supervision import GRID, TOWN1, VILLAGE1

NOW = 1748746800000
HOUR = 3_600_000
CFG = config.load()
SECRET = "SECtest-robot-secret"


class Robot:
    """A chat robot's webhook: answers `errcode` like DingTalk and WeCom do,
    and refuses a DingTalk request whose signature is wrong or stale."""

    def __init__(self, fmt: str, secret: str | None = None):
        self.fmt, self.secret = fmt, secret
        self.got: list[dict] = []
        self.fail_next = 0            # answer this many requests with HTTP 500
        self.errcode_next = 0         # then this many with errcode 310000 (bad keyword/sign)
        robot = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                if robot.fail_next:
                    robot.fail_next -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                answer = {"errcode": 0, "errmsg": "ok"}
                if robot.errcode_next or not robot.signed(query):
                    robot.errcode_next = max(0, robot.errcode_next - 1)
                    answer = {"errcode": 310000, "errmsg": "sign not match"}
                else:
                    robot.got.append(body)
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/robot/send?access_token=abc" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def signed(self, query: dict) -> bool:
        if not self.secret:
            return True
        ts, sign = query.get("timestamp", [""])[0], query.get("sign", [""])[0]
        want = base64.b64encode(hmac.new(self.secret.encode(), f"{ts}\n{self.secret}".encode(),
                                         hashlib.sha256).digest()).decode()
        return bool(ts) and hmac.compare_digest(sign, want)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def conn(backend_db):
    conn = connect(backend_db)
    grid.import_grid(conn, GRID)
    users.add_user(conn, "v1", "village", VILLAGE1, "password-1", NOW)
    users.add_user(conn, "t1", "town", TOWN1, "password-1", NOW)
    yield conn
    conn.close()


@pytest.fixture
def robot():
    r = Robot("dingtalk", SECRET)
    yield r
    r.close()


def cfg_for(robot: Robot, **extra) -> notify.NotifyConfig:
    return notify.NotifyConfig(robot.url, robot.fmt, robot.secret, "https://jg.example.gov.cn/",
                               {"v1": "13800000001", "t1": "13800000002"}, **extra)


def violate(conn, code, dedup, now=NOW, subject="S1"):
    violations.report(conn, now, code, dedup, subject=subject, shop="SHOP1")
    cases.file_new_violations(conn, now, CFG)


def test_a_new_case_reaches_its_inspector_once_in_words_with_a_mention(conn, robot):
    violate(conn, "banned_product_sold", "a")
    cfg = cfg_for(robot)
    assert notify.collect(conn, NOW, cfg) == 1
    assert notify.collect(conn, NOW + 1, cfg) == 0                 # the cursor moved with the queue
    clock = iter(range(NOW, NOW + 100)).__next__
    assert notify.Sender(conn, cfg, clock).send_due() == 1
    assert notify.Sender(conn, cfg, clock).send_due() == 0          # a restarted sender sends nothing twice
    (body,) = robot.got
    assert body["msgtype"] == "markdown" and body["at"] == {"atMobiles": ["13800000001"], "isAtAll": False}
    text = body["markdown"]["text"]
    assert "新案件待核查" in text and "禁用" in text and "banned_product_sold" not in text
    assert "S1" in text and "@13800000001" in text and "#/case/" in text
    assert "北京时间" in text and "1748" not in text                # a local time, not epoch milliseconds
    (row,) = notifications.listing(conn)
    assert row["recipient"] == "v1" and row["sent"] is not None and row["attempts"] == 1


def test_failures_are_retried_with_backoff_and_the_robots_error_is_kept(conn, robot):
    violate(conn, "banned_product_sold", "a")
    cfg = cfg_for(robot)
    notify.collect(conn, NOW, cfg)
    robot.fail_next, robot.errcode_next = 1, 1
    now = [NOW]
    sender = notify.Sender(conn, cfg, lambda: now[0])
    assert sender.send_due() == 0                                   # HTTP 500
    (row,) = notifications.listing(conn)
    assert (row["attempts"], row["last_error"], row["sent"]) == (1, "HTTP 500", None)
    assert sender.send_due() == 0                                   # not due yet: backing off
    now[0] = row["next_at"]
    assert sender.send_due() == 0                                   # the robot refuses: errcode
    (row,) = notifications.listing(conn)
    assert row["attempts"] == 2 and "310000" in row["last_error"]
    assert row["next_at"] - now[0] == notify.backoff_ms(1) > notify.backoff_ms(0)
    now[0] = row["next_at"]
    assert sender.send_due() == 1 and len(robot.got) == 1


def test_a_wrong_signing_secret_is_never_delivered(conn, robot):
    violate(conn, "banned_product_sold", "a")
    cfg = notify.NotifyConfig(robot.url, "dingtalk", "another-secret")
    notify.collect(conn, NOW, cfg)
    assert notify.Sender(conn, cfg, lambda: NOW).send_due() == 0
    assert robot.got == [] and "sign not match" in notifications.listing(conn)[0]["last_error"]


def test_escalation_and_district_overdue_notify_the_new_holder(conn, robot):
    violate(conn, "banned_product_sold", "a")
    cfg = cfg_for(robot)
    notify.collect(conn, NOW, cfg)
    assert cases.escalate_due(conn, NOW + 73 * HOUR, CFG) == 1      # village -> town
    assert notify.collect(conn, NOW + 73 * HOUR, cfg) == 1
    assert cases.escalate_due(conn, NOW + 146 * HOUR, CFG) == 1     # town -> district (nobody there)
    late = NOW + 146 * HOUR + 169 * HOUR                            # past the district's deadline too
    assert notify.collect(conn, late, cfg) == 2                     # escalated (unassigned), then overdue
    assert notify.collect(conn, late + HOUR, cfg) == 0              # overdue once per deadline
    kinds = [(r["kind"], r["recipient"]) for r in reversed(notifications.listing(conn))]
    assert kinds == [("assigned", "v1"), ("escalated", "t1"), ("escalated", None), ("overdue", None)]
    assert notify.Sender(conn, cfg, lambda: late).send_due() == 4
    assert "案件已超期" in robot.got[-1]["markdown"]["text"] and robot.got[-1]["at"]["atMobiles"] == []


def test_wecom_gets_a_text_message_mentioning_the_inspector(conn):
    robot = Robot("wecom")
    try:
        violate(conn, "sale_outside_hours", "a")
        cfg = cfg_for(robot)
        notify.collect(conn, NOW, cfg)
        assert notify.Sender(conn, cfg, lambda: NOW).send_due() == 1
        (body,) = robot.got
        assert body["msgtype"] == "text" and body["text"]["mentioned_mobile_list"] == ["13800000001"]
        assert body["text"]["content"].startswith("新案件待核查") and "####" not in body["text"]["content"]
    finally:
        robot.close()


def test_a_case_nobody_could_be_assigned_is_announced_for_assignment(conn, robot):
    conn.execute("DELETE FROM users")                    # no inspector anywhere on the grid
    violate(conn, "banned_product_sold", "a")
    cfg = cfg_for(robot)
    assert notify.collect(conn, NOW, cfg) == 1
    (row,) = notifications.listing(conn)
    assert (row["kind"], row["recipient"]) == ("opened", None)
    assert notify.Sender(conn, cfg, lambda: NOW).send_due() == 1
    assert "新案件待指派" in robot.got[0]["markdown"]["text"] and "（未指派）" in robot.got[0]["markdown"]["text"]


def test_a_closed_case_is_not_announced(conn, robot):
    violate(conn, "banned_product_sold", "a")
    conn.execute("UPDATE cases SET state = 'closed'")
    assert notify.collect(conn, NOW, cfg_for(robot)) == 0


def test_the_config_file_is_checked_key_by_key(tmp_path, monkeypatch):
    path = tmp_path / "notify.toml"
    for text, error in (("", "no [notify] table"),
                        ('[notify]\nurl = "ftp://x"\n', "notify.url"),
                        ('[notify]\nurl = "https://x"\nformat = "slack"\n', "notify.format"),
                        ('[notify]\nurl = "https://x"\nsecret_env = "NOPE_NOT_SET"\n', "NOPE_NOT_SET"),
                        ('[notify]\nurl = "https://x"\nmobiles = { v1 = "call me" }\n', "notify.mobiles"),
                        ('[notify]\nurl = "https://x"\nchannel = "x"\n', "notify.channel")):
        path.write_text(text, "utf-8")
        with pytest.raises(notify.NotifyConfigError, match=error.replace("[", r"\[").replace("]", r"\]")):
            notify.load(path)
    monkeypatch.setenv("ROBOT_SECRET", SECRET)
    path.write_text('[notify]\nurl = "https://oapi.dingtalk.com/robot/send?access_token=t"\nsecret_env = "ROBOT_SECRET"\n'
                    'dashboard = "https://jg.example.gov.cn"\n[notify.mobiles]\nv1 = "13800000001"\n', "utf-8")
    cfg = notify.load(path)
    assert (cfg.format, cfg.secret, cfg.dashboard, cfg.mobiles) == (
        "dingtalk", SECRET, "https://jg.example.gov.cn/", {"v1": "13800000001"})
    assert "&timestamp=5&sign=" in notify.signed_url(cfg, 5)
