"""`gateway run --notify FILE` end to end: the supervision leader of a real
gateway process files a violation into a case and posts it to a local chat
robot (DingTalk format, signed); a bad notify file stops `gateway run` before
anything starts."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from simulator.processes import ROOT, wait_for
from tests.support.district import District
from tests.test_notify import SECRET, Robot


def test_gateway_run_posts_a_new_case_to_the_robot(tmp_path, monkeypatch):
    robot = Robot("dingtalk", SECRET)
    monkeypatch.setenv("ROBOT_SECRET", SECRET)       # the gateway process inherits it
    config = tmp_path / "notify.toml"
    config.write_text(f'[notify]\nurl = "{robot.url}"\nsecret_env = "ROBOT_SECRET"\n', "utf-8")
    d = District(tmp_path / "d", terminals=1, count=0)
    d.gateway.extra_args += ["--notify", str(config)]
    try:
        d.start()
        conn = sqlite3.connect(d.db, timeout=30)
        with conn:      # a finding as a rule would report it
            conn.execute("INSERT INTO violations(time, code, dedup, subject, terminal, seq, detail) "
                         "VALUES (1748746800000, 'banned_product_sold', 'notify-e2e', 'S1', ?, 1, '{}')",
                         [d.names[0]])
        conn.close()
        wait_for(lambda: robot.got, 60, "the case posted to the robot")
        text = robot.got[0]["markdown"]["text"]
        assert "新案件待指派" in text and "（未指派）" in text          # nobody on the grid to assign it to
        assert "禁用" in text and "S1" in text
    finally:
        d.close()
        robot.close()


def test_gateway_run_refuses_a_bad_notify_file_before_starting(tmp_path):
    config = tmp_path / "notify.toml"
    config.write_text('[notify]\nurl = "ftp://robot"\n', "utf-8")
    done = subprocess.run([sys.executable, "-m", "gateway", "run", "--db", str(tmp_path / "gw.db"),
                           "--notify", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "notify.url" in done.stderr
    assert not (tmp_path / "gw.db").exists()            # refused before the database was made
