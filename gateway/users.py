"""Supervision users, their tokens, and the audit log of reads of personal data.

Passwords are stored as scrypt hashes (stdlib `hashlib.scrypt`, n=2**14, r=8:
the interactive-login parameters of the scrypt paper, ~16 MB and tens of ms per
check, so a stolen table is slow to brute-force while login stays instant).
Tokens are random, stored only as their SHA-256, and expire; a token read from
a leaked database cannot be replayed.

Each user has a role and an area code on the grid: a district user sees the
district, a town (镇街) user the shops of that town, a village (村社) user the
shops of that village. `Scope` turns that into one SQL condition on the
denormalised grid columns every supervision table carries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass

from protocols.schema import is_id

ROLES = ("district", "town", "village")
LEVEL_RANK = {"village": 0, "town": 1, "district": 2}
TOKEN_TTL_MS = 8 * 3600_000  # one working day in the field

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    area        TEXT NOT NULL,
    pw          TEXT NOT NULL,
    created     INTEGER NOT NULL,
    disabled    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS users_area ON users(role, area);
CREATE TABLE IF NOT EXISTS tokens (
    hash        TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    created     INTEGER NOT NULL,
    expires     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
    id          INTEGER PRIMARY KEY,
    time        INTEGER NOT NULL,
    user        TEXT NOT NULL,
    role        TEXT NOT NULL,
    area        TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_target ON audit_log(target);
"""


class UserError(ValueError):
    pass


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    area: str

    def scope(self) -> "Scope":
        return Scope(self.role, self.area)


@dataclass(frozen=True)
class Scope:
    role: str
    area: str

    def where(self, prefix: str = "") -> tuple[str, list]:
        """SQL condition limiting rows with district/town/village columns to the area.
        District users also see rows of shops not yet on the grid (NULL district):
        someone must, and the district is responsible for the registry."""
        if self.role == "district":
            return f"({prefix}district = ? OR {prefix}district IS NULL)", [self.area]
        return f"{prefix}{self.role} = ?", [self.area]

    def covers(self, row: dict) -> bool:
        if self.role == "district":
            return row.get("district") in (self.area, None)
        return row.get(self.role) == self.area


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    derived = hashlib.scrypt(password.encode(), salt=salt, n=2 ** 14, r=8, p=1, dklen=32)
    return "scrypt$16384$8$1$%s$%s" % (base64.b64encode(salt).decode(), base64.b64encode(derived).decode())


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        derived = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                 dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(derived, base64.b64decode(digest))


def add_user(conn: sqlite3.Connection, name: str, role: str, area: str, password: str, now: int) -> int:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if not is_id(name):
        raise UserError("name must be 1-64 characters of A-Z a-z 0-9 _ - . :")
    if not is_id(area):
        raise UserError("area must be a grid area code")
    if len(password) < 8:
        raise UserError("password must have at least 8 characters")
    ensure_schema(conn)
    known = conn.execute("SELECT level FROM areas WHERE code=?", [area]).fetchone() if conn.execute(
        "SELECT 1 FROM sqlite_master WHERE name='areas'").fetchone() else None
    if known is not None and known[0] != role:
        raise UserError(f"area {area} is a {known[0]}, not a {role}")
    cur = conn.execute(
        "INSERT INTO users(name, role, area, pw, created) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET role=excluded.role, area=excluded.area, pw=excluded.pw, disabled=0",
        [name, role, area, hash_password(password), now])
    return cur.lastrowid


def _user(row) -> User:
    return User(row[0], row[1], row[2], row[3])


def login(conn: sqlite3.Connection, name: str, password: str, now: int, ttl_ms: int = TOKEN_TTL_MS) -> tuple[str, User] | None:
    row = conn.execute("SELECT id, name, role, area, pw FROM users WHERE name=? AND disabled=0", [name]).fetchone()
    if row is None:
        check_password(password, hash_password("timing-equaliser"))  # same cost for unknown names
        return None
    if not check_password(password, row[4]):
        return None
    token = secrets.token_urlsafe(32)
    conn.execute("DELETE FROM tokens WHERE expires < ?", [now])
    conn.execute("INSERT INTO tokens(hash, user_id, created, expires) VALUES (?, ?, ?, ?)",
                 [hashlib.sha256(token.encode()).hexdigest(), row[0], now, now + ttl_ms])
    return token, _user(row)


def by_token(conn: sqlite3.Connection, token: str, now: int) -> User | None:
    if not token or len(token) > 200:
        return None
    row = conn.execute(
        "SELECT u.id, u.name, u.role, u.area FROM tokens t JOIN users u ON u.id = t.user_id "
        "WHERE t.hash = ? AND t.expires > ? AND u.disabled = 0",
        [hashlib.sha256(token.encode()).hexdigest(), now]).fetchone()
    return _user(row) if row else None


def logout(conn: sqlite3.Connection, token: str) -> None:
    conn.execute("DELETE FROM tokens WHERE hash = ?", [hashlib.sha256(token.encode()).hexdigest()])


def inspector_for(conn: sqlite3.Connection, role: str, area: str | None) -> str | None:
    """The grid inspector responsible for an area (first by name when several)."""
    if not area:
        return None
    row = conn.execute("SELECT name FROM users WHERE role=? AND area=? AND disabled=0 ORDER BY name LIMIT 1",
                       [role, area]).fetchone()
    return row[0] if row else None


def user_by_name(conn: sqlite3.Connection, name: str) -> User | None:
    row = conn.execute("SELECT id, name, role, area FROM users WHERE name=? AND disabled=0", [name]).fetchone()
    return _user(row) if row else None


def audit(conn: sqlite3.Connection, now: int, user: User, action: str, target: str, detail: str = "") -> None:
    """One row per read of personal data (a subject's page, its purchases)."""
    conn.execute("INSERT INTO audit_log(time, user, role, area, action, target, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 [now, user.name, user.role, user.area, action, target, detail[:500]])
