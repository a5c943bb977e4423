"""Config push re-sends with back-off: a terminal too busy to confirm a
section gets it again after 1, 2, 4... seconds (while its status asks), never
more often, up to MAX_RESEND_S; a new version starts afresh. Without it a
thousand loaded terminals were each sent every section about four times."""

import sqlite3

import pytest

from gateway.store import connect
from gateway.enforcement.configpush import MAX_RESEND_S, ConfigPusher
from protocols import configsync
from simulator.processes import provision_terminals


@pytest.fixture
def pusher(tmp_path):
    db = tmp_path / "gateway.db"
    creds = provision_terminals(db, ["T1"])[0]
    connect(db).close()
    clock = {"t": 1000.0}
    p = ConfigPusher(db, lambda terminal, payload, retain: None, lambda t: bytes.fromhex(creds.key_hex),
                     monotonic=lambda: clock["t"])
    return p, clock, db


def pushed_at(p, clock, t):
    clock["t"] = t
    return p.push("T1", True)


def test_each_resend_of_an_unconfirmed_version_waits_twice_as_long(pusher):
    p, clock, _ = pusher
    everything = pushed_at(p, clock, 1000.0)
    assert everything == len(configsync.SECTIONS)
    small = everything - 1                         # the gallery keeps its own, longer wait
    assert pushed_at(p, clock, 1000.5) == 0
    assert pushed_at(p, clock, 1001.1) == small    # first re-send after 1 s
    assert pushed_at(p, clock, 1002.5) == 0        # the second waits 2 s
    assert pushed_at(p, clock, 1003.2) == small
    assert pushed_at(p, clock, 1006.9) == 0        # the third waits 4 s
    assert pushed_at(p, clock, 1007.3) == small
    t = 1007.3
    for _ in range(12):                            # 8, 16, ... then never more than MAX_RESEND_S apart
        t += MAX_RESEND_S + 1
        assert pushed_at(p, clock, t) >= small
    assert pushed_at(p, clock, t + MAX_RESEND_S - 1) == 0


def test_a_new_version_is_sent_at_once_and_a_confirmed_one_never_again(pusher):
    p, clock, db = pusher
    pushed_at(p, clock, 1000.0)
    for t in (1001.1, 1003.2):
        pushed_at(p, clock, t)
    versions, _ = p.versions(p._db(), "T1")
    p._reported["T1"] = {name: v for name, v in versions.items() if name != configsync.PARAMS}
    conn = sqlite3.connect(db)
    conn.execute("UPDATE config_sections SET version = version + 1 WHERE name = ?", [configsync.PARAMS])
    conn.commit()
    conn.close()
    assert pushed_at(p, clock, 1003.3) == 1        # the new params, without waiting out the back-off
    assert pushed_at(p, clock, 2000.0) == 1        # only params is unconfirmed: nothing else is re-sent


def confirm_everything(p):
    versions, _ = p.versions(p._db(), "T1")
    p.handle("status", "T1", dict(versions))
    p._reported["T1"] = dict(versions)
    for name, version in versions.items():
        p._sent[("T1", name)] = (version, 0.0, 1)
    return versions


def test_heartbeats_repeating_confirmed_versions_look_at_the_database_once_per_sweep_interval(pusher, monkeypatch):
    """A thousand terminals with a heartbeat of a few seconds: a status that
    only repeats what the terminal runs, with everything sent confirmed, is
    a visit, at most one database look every SWEEP_EVERY_S."""
    from gateway.enforcement.configpush import SWEEP_EVERY_S
    p, clock, db = pusher
    versions = confirm_everything(p)
    looks = []
    real = p.versions
    monkeypatch.setattr(p, "versions", lambda conn, t: looks.append(t) or real(conn, t))
    start = clock["t"]
    for i in range(20):
        clock["t"] = start + i * 0.5
        assert p.handle("status", "T1", dict(versions)) == 0
    assert looks == []                           # 10 s of heartbeats after the status that was answered
    clock["t"] = start + SWEEP_EVERY_S + 0.1
    p.handle("status", "T1", dict(versions))
    assert len(looks) == 1
    # a status with other versions (a section stored, a reboot) is answered at once
    changed = dict(versions, params=versions["params"] - 1)
    assert p.handle("status", "T1", changed) == 1 and len(looks) == 2


def test_a_status_still_missing_a_sent_version_keeps_asking(pusher):
    p, clock, _ = pusher
    versions = confirm_everything(p)
    conn = sqlite3.connect(p.db_path)
    conn.execute("UPDATE config_sections SET version = version + 1 WHERE name = ?", [configsync.PARAMS])
    conn.commit()
    conn.close()
    clock["t"] += 20
    assert p.sweep() == 1                          # a new generation: everyone is looked at
    clock["t"] += 1.1
    assert p.handle("status", "T1", dict(versions)) == 1   # not confirmed: re-sent on its back-off
