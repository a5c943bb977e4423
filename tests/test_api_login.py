"""Logins under attack (issue 15, item 11): throttled per client address and
per (address, name), never per account alone, so an attacker cannot lock the
real user out; password hashing outside any transaction, so a login flood
never holds the database write lock that authorizations and ingest need;
counters that stay bounded."""

from __future__ import annotations

import sqlite3
import statistics
import threading
import time

import pytest
from fastapi.testclient import TestClient

from gateway.store import users
from gateway.api import create_app
from gateway.api.throttle import Limits, LoginThrottle, client_key
from tests.support.api_server import Served, client_from
from tests.support.api_world import PASSWORD, T0, build, copy_of

ATTACKER, OFFICER = ("203.0.113.9", 40000), ("198.51.100.7", 40001)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return build(tmp_path_factory.mktemp("login-template"), {"now": T0})


@pytest.fixture
def db(template, tmp_path):
    return copy_of(template, tmp_path / "world")


def app_for(db, tmp_path, **kwargs):
    return create_app(db, clock=lambda: T0 + 300_000, photos_dir=tmp_path / "photos", **kwargs)


def untarpitted():
    """The default limits, but refusals answered at once: the tests count
    refusals, they do not wait for them (the tarpit has its own test)."""
    return LoginThrottle(Limits(tarpit_s=0))


def test_an_attackers_wrong_passwords_never_lock_out_the_right_password_from_elsewhere(db, tmp_path):
    """Forty wrong passwords for d1 from one address: that address is slowed
    down (429 with Retry-After, doubling), and d1 logs in from its own
    address at once, with the right password, every time it tries."""
    app = app_for(db, tmp_path, login_throttle=untarpitted())
    with TestClient(app, client=ATTACKER) as attacker, TestClient(app, client=OFFICER) as officer:
        statuses = []
        for i in range(40):
            r = attacker.post("/api/login", json={"name": "d1", "password": f"guess-{i:04d}"})
            statuses.append((r.status_code, r.json()["code"], r.headers.get("Retry-After")))
            if i in (7, 20, 39):   # the officer, meanwhile, from its own address
                r = officer.post("/api/login", json={"name": "d1", "password": PASSWORD})
                assert r.status_code == 200, (i, r.status_code, r.text)
        assert [s[0] for s in statuses[:5]] == [401] * 5 and [s[0] for s in statuses[-10:]] == [429] * 10
        assert all(code == "too_many_attempts" and int(retry) >= 1 for status, code, retry in statuses if status == 429)
        # from the attacker's address even the right password waits: the lock is that address's, not d1's
        assert attacker.post("/api/login", json={"name": "d1", "password": PASSWORD}).status_code == 429


def test_a_flood_from_one_address_is_refused_before_any_hashing(db, tmp_path, monkeypatch):
    """Six threads of anonymous logins (names nobody has, as in the issue):
    after the address's free failures every attempt is a cheap 429, so the
    flood costs a bounded number of scrypt runs (the free ones, plus at most
    one per thread already past the check when the back-off began)."""
    runs = []
    real = users.check_password
    monkeypatch.setattr(users, "check_password", lambda *a: runs.append(1) or real(*a))
    app = app_for(db, tmp_path, login_throttle=untarpitted())
    with TestClient(app, client=ATTACKER) as attacker:
        codes = []

        def flood(k):
            for i in range(30):
                codes.append(attacker.post("/api/login", json={"name": f"nobody{k}-{i}", "password": "x" * 9})
                             .status_code)
        threads = [threading.Thread(target=flood, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert len(codes) == 180 and set(codes) <= {401, 429}
    assert len(runs) <= Limits().address_free + 6 and codes.count(429) >= 150, (len(runs), codes.count(429))


def test_password_hashing_never_runs_inside_a_database_transaction(db, tmp_path, monkeypatch):
    """While the password is being checked, another connection can take the
    write lock at once (busy timeout 0): the login holds no lock to queue
    authorizations and ingest behind."""
    probes = []
    real = users.check_password

    def probe(*args):
        other = sqlite3.connect(db, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            probes.append("free")
        except sqlite3.OperationalError as err:
            probes.append(str(err))
        finally:
            other.close()
        return real(*args)

    monkeypatch.setattr(users, "check_password", probe)
    with TestClient(app_for(db, tmp_path)) as client:
        assert client.post("/api/login", json={"name": "d1", "password": PASSWORD}).status_code == 200
        assert client.post("/api/login", json={"name": "d1", "password": "wrong-password"}).status_code == 401
        assert client.post("/api/login", json={"name": "nobody", "password": "wrong-password"}).status_code == 401
    assert probes == ["free"] * 3


def test_writes_proceed_while_logins_hammer(db, tmp_path):
    """The issue's load, over real HTTP: six threads of anonymous logins,
    each from its own address, for three seconds, while another connection
    commits a small write every 10 ms as the authorization service does. The
    writes' p95 stays under 250 ms, on a machine others share (2,598 ms on
    the code before, the issue saw 2,683 ms); passwords were checked all
    along (each 401 is a scrypt run)."""
    stop = threading.Event()
    waits: list[float] = []
    answers: list[int] = []

    def writer():
        conn = sqlite3.connect(db, timeout=30, isolation_level=None)
        conn.execute("CREATE TABLE IF NOT EXISTS probe_writes (id INTEGER PRIMARY KEY, at REAL)")
        try:
            while not stop.is_set():
                started = time.perf_counter()
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO probe_writes(at) VALUES (?)", [started])
                conn.execute("COMMIT")
                waits.append((time.perf_counter() - started) * 1000)
                stop.wait(0.01)
        finally:
            conn.close()

    with Served(app_for(db, tmp_path)) as served:
        def flood(k):
            with client_from(f"127.0.0.{k + 2}", served.url) as c:
                i = 0
                while not stop.is_set():
                    answers.append(c.post("/api/login", json={"name": f"anon{k}-{i}", "password": "not-the-password"}
                                          ).status_code)
                    i += 1
        threads = [threading.Thread(target=writer)] + [threading.Thread(target=flood, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        time.sleep(3.0)  # the load runs for a fixed time: what is measured is the writes' latency under it
        stop.set()
        for t in threads:
            t.join(30)
    p95 = statistics.quantiles(waits, n=20)[-1]
    hashed = answers.count(401)
    assert p95 < 250, f"write p95 {p95:.0f} ms under {len(answers)} logins, {hashed} of them hashed"
    assert hashed >= 15 and len(waits) >= 50, (hashed, len(waits))   # the load was there


def test_a_refused_attempt_is_answered_late_and_costs_no_hashing(db, tmp_path):
    """The tarpit: a throttled attempt waits up to `tarpit_s` before its 429,
    so a flood that waits for its answers slows down to match."""
    app = app_for(db, tmp_path, login_throttle=LoginThrottle(Limits(burst=1, refill_s=60, tarpit_s=0.3)))
    with TestClient(app, client=ATTACKER) as attacker:
        assert attacker.post("/api/login", json={"name": "d1", "password": "wrong-password"}).status_code == 401
        started = time.monotonic()
        r = attacker.post("/api/login", json={"name": "d1", "password": PASSWORD})
        assert r.status_code == 429 and 0.3 <= time.monotonic() - started < 5
        assert 50 <= int(r.headers["Retry-After"]) <= 60


def test_back_off_doubles_per_pair_and_address_and_is_forgotten():
    now = [1000.0]
    lim = Limits(burst=1000, refill_s=0.001)
    throttle = LoginThrottle(lim, clock=lambda: now[0])
    for _ in range(lim.pair_free):
        assert throttle.check("a", "d1") == 0
        throttle.failed("a", "d1")
    waits = []
    for _ in range(4):
        waits.append(round(throttle.check("a", "d1")))   # locked: nothing is hashed
        now[0] += waits[-1]
        assert throttle.check("a", "d1") == 0
        throttle.failed("a", "d1")
    assert waits == [0, 1, 2, 4]     # the 6th failure locks 1 s, the 7th 2 s ...
    assert throttle.check("b", "d1") == 0 and throttle.check("a", "t1") == 0   # other pairs untouched
    throttle.succeeded("a", "d1")
    assert throttle.check("a", "d1") == 0                                      # the right password resets the pair
    for i in range(30):                                  # across names: the address's own back-off
        now[0] += throttle.check("a", f"n{i}")
        throttle.failed("a", f"n{i}")
    assert throttle.check("a", "fresh-name") > 60 and throttle.check("b", "fresh-name") == 0
    assert throttle.check("a", "fresh-name") <= lim.max_lock_s
    now[0] += lim.max_lock_s + lim.forget_s + 1
    assert throttle.check("a", "fresh-name") == 0
    throttle.failed("a", "fresh-name")
    assert throttle.check("a", "fresh-name") == 0        # an hour later the count started again


def test_the_address_bucket_refills_slowly():
    now = [0.0]
    throttle = LoginThrottle(Limits(burst=3, refill_s=3.0), clock=lambda: now[0])
    assert [throttle.check("a", "x") for _ in range(3)] == [0, 0, 0]
    assert throttle.check("a", "x") == pytest.approx(3.0)
    now[0] += 3.0
    assert throttle.check("a", "x") == 0 and throttle.check("a", "x") > 0


def test_counters_stay_bounded_and_ipv6_counts_per_64():
    throttle = LoginThrottle(Limits(max_keys=100))
    for i in range(5000):
        address = client_key(f"2001:db8:{i:x}::1")
        throttle.check(address, f"user{i}")
        throttle.failed(address, f"user{i}")
    assert all(n <= 100 for n in throttle.sizes())
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7" and client_key("192.0.2.7") == "192.0.2.7"
