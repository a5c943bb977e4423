"""The operator commands around the API: grid import and user accounts."""

import os
import subprocess
import sys
from pathlib import Path

from gateway.store import grid as grid_store

from gateway.store import users
from gateway.store import connect

ROOT = Path(__file__).resolve().parents[1]

GRID_TOML = """
[[areas]]
code = "330113"
level = "district"
name = "临平区"
[[areas]]
code = "330113001"
level = "town"
name = "临平街道"
parent = "330113"
[[areas]]
code = "330113001001"
level = "village"
name = "东湖村"
parent = "330113001"
[[shops]]
id = "SHOP1"
name = "东湖农资店"
village = "330113001001"
designated = true
hours = "07:30-12:00,13:00-18:30"
lat = 30.42
lon = 120.30
"""


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_grid_import_and_user_add_from_the_command_line(tmp_path):
    db = tmp_path / "gw.db"
    (tmp_path / "grid.toml").write_text(GRID_TOML, encoding="utf-8")
    out = run("grid", "--db", str(db), "import", str(tmp_path / "grid.toml"))
    assert out.returncode == 0 and "1 shops" in out.stdout, out.stderr
    out = run("users", "--db", str(db), "add", "--role", "town", "--area", "330113001", "--password-env", "PW", "zhang",
              env={"PW": "long-enough-1"})
    assert out.returncode == 0, out.stderr
    conn = connect(db)
    try:
        shop = grid_store.shop(conn, "SHOP1")
        assert (shop.town, shop.district, shop.designated) == ("330113001", "330113", True)
        assert users.login(conn, "zhang", "long-enough-1", 0) is not None
        assert users.login(conn, "zhang", "wrong", 0) is None
        stored = conn.execute("SELECT pw FROM users WHERE name='zhang'").fetchone()[0]
        assert stored.startswith("scrypt$") and "long-enough-1" not in stored
    finally:
        conn.close()


def test_bad_grid_file_and_wrong_role_for_area_are_refused(tmp_path):
    db = tmp_path / "gw.db"
    (tmp_path / "grid.toml").write_text(GRID_TOML.replace('hours = "07:30-12:00,13:00-18:30"', 'hours = "25:00-26:00"'),
                                        encoding="utf-8")
    out = run("grid", "--db", str(db), "import", str(tmp_path / "grid.toml"))
    assert out.returncode == 2 and "shops[0].hours" in out.stderr
    (tmp_path / "grid.toml").write_text(GRID_TOML, encoding="utf-8")
    assert run("grid", "--db", str(db), "import", str(tmp_path / "grid.toml")).returncode == 0
    out = run("users", "--db", str(db), "add", "--role", "village", "--area", "330113001", "--password-env", "PW", "li",
              env={"PW": "long-enough-1"})
    assert out.returncode == 2 and "is a town" in out.stderr
    out = run("users", "--db", str(db), "add", "--role", "town", "--area", "330113001", "--password-env", "PW", "li",
              env={"PW": "short"})
    assert out.returncode == 2 and "at least 8" in out.stderr


def test_user_add_without_a_terminal_says_how_instead_of_a_traceback(tmp_path):
    """A script piping the password in gets the way to do it, and no user."""
    db = tmp_path / "gw.db"
    (tmp_path / "grid.toml").write_text(GRID_TOML, encoding="utf-8")
    assert run("grid", "--db", str(db), "import", str(tmp_path / "grid.toml")).returncode == 0
    out = subprocess.run([sys.executable, "-m", "gateway", "users", "--db", str(db), "add", "--role", "town",
                          "--area", "330113001", "zhang"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         input="long-enough-1\n", env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2 and "--password-env" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert "zhang" not in run("users", "--db", str(db), "list").stdout


def test_password_reset_and_disable_end_sessions_at_once(tmp_path):
    """Issue 15, item 12: `users add` of an existing name (the password
    reset) revokes its tokens; `users disable` stops its tokens and its
    logins at once, while the API keeps running; `enable` lets it log in
    again (old sessions stay ended); `list` shows who is disabled."""
    from fastapi.testclient import TestClient

    from gateway.api import create_app

    db = tmp_path / "gw.db"
    (tmp_path / "grid.toml").write_text(GRID_TOML, encoding="utf-8")
    assert run("grid", "--db", str(db), "import", str(tmp_path / "grid.toml")).returncode == 0

    def add(password):
        out = run("users", "--db", str(db), "add", "--role", "town", "--area", "330113001", "--password-env", "PW",
                  "zhang", env={"PW": password})
        assert out.returncode == 0, out.stderr

    def login(client, password):
        r = client.post("/api/login", json={"name": "zhang", "password": password})
        client.cookies.clear()
        return {"Authorization": "Bearer " + r.json()["token"]} if r.status_code == 200 else r.status_code

    add("first-password-1")
    with TestClient(create_app(db, photos_dir=tmp_path / "photos")) as client:
        old = login(client, "first-password-1")
        assert client.get("/api/me", headers=old).status_code == 200
        add("second-password-2")                                    # the reset
        assert client.get("/api/me", headers=old).status_code == 401
        assert login(client, "first-password-1") == 401
        new = login(client, "second-password-2")
        assert client.get("/api/me", headers=new).status_code == 200
        out = run("users", "--db", str(db), "disable", "zhang")
        assert out.returncode == 0 and "disabled" in out.stdout, out.stderr
        assert client.get("/api/me", headers=new).status_code == 401
        assert login(client, "second-password-2") == 401
        listed = run("users", "--db", str(db), "list")
        assert listed.returncode == 0 and listed.stdout.startswith("zhang\ttown\t330113001\tdisabled"), listed.stdout
        out = run("users", "--db", str(db), "enable", "zhang")
        assert out.returncode == 0, out.stderr
        assert client.get("/api/me", headers=new).status_code == 401   # ended sessions stay ended
        again = login(client, "second-password-2")
        assert client.get("/api/me", headers=again).status_code == 200
        listed = run("users", "--db", str(db), "list")
        assert listed.stdout.startswith("zhang\ttown\t330113001\tactive\t1 sessions"), listed.stdout
    for action in ("disable", "enable"):
        out = run("users", "--db", str(db), action, "nobody")
        assert out.returncode == 2 and "no user 'nobody'" in out.stderr


def test_user_display_name_from_the_command_line_kept_on_a_password_reset(tmp_path):
    """Issue 18, item 7: the dashboard shows staff by the name colleagues know;
    a password reset without --display-name keeps it, a bad one is refused."""
    db = tmp_path / "gw.db"
    (tmp_path / "grid.toml").write_text(GRID_TOML, encoding="utf-8")
    assert run("grid", "--db", str(db), "import", str(tmp_path / "grid.toml")).returncode == 0
    add = ("users", "--db", str(db), "add", "--role", "town", "--area", "330113001", "--password-env", "PW")
    out = run(*add, "--display-name", "张伟", "zhang", env={"PW": "long-enough-1"})
    assert out.returncode == 0, out.stderr
    assert run(*add, "zhang", env={"PW": "long-enough-2"}).returncode == 0
    out = run(*add, "--display-name", "a\u202eb", "zhang", env={"PW": "long-enough-3"})
    assert out.returncode == 2 and "display name" in out.stderr
    conn = connect(db)
    try:
        assert conn.execute("SELECT display_name FROM users WHERE name='zhang'").fetchone()[0] == "张伟"
        assert users.login(conn, "zhang", "long-enough-2", 0) is not None    # the refused reset changed nothing
    finally:
        conn.close()
