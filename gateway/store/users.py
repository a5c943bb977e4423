"""Supervision users, their tokens, and the audit log of reads of personal data.

Passwords are stored as scrypt hashes (stdlib `hashlib.scrypt`, n=2**14, r=8:
the interactive-login parameters of the scrypt paper, ~16 MB and tens of ms per
check, so a stolen table is slow to brute-force while login stays instant).
Tokens are random, stored only as their SHA-256, and expire; a token read from
a leaked database cannot be replayed. A password reset (`add` of an existing
name) and `disable` delete the user's tokens in the same transaction, and
every token check joins the user row, so a disabled user's sessions end with
the next request.

Hashing never runs inside a transaction: `login` reads the stored hash,
checks the password with no lock held (scrypt costs tens of milliseconds, and
under `BEGIN IMMEDIATE` a login flood queued every authorization and ingest
commit behind it, issue 15 item 11), then writes the token in a short
transaction that re-checks the hash and the disabled flag, so a reset or a
disable that lands in between wins.

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
from dataclasses import dataclass

from gateway.store import transaction
from protocols.schema import is_id

ROLES = ("district", "town", "village")
LEVEL_RANK = {"village": 0, "town": 1, "district": 2}
TOKEN_TTL_MS = 8 * 3600_000  # one working day in the field
MAX_TOKENS_PER_USER = 20     # a phone, a desk PC and a few forgotten browsers; older sessions end first



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


def add_user(conn, name: str, role: str, area: str, password: str, now: int,
             display_name: str | None = None) -> int:
    """`display_name`: the name colleagues know the user by, shown on the
    dashboard instead of the login name; None keeps the one set before."""
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if not is_id(name):
        raise UserError("name must be 1-64 characters of A-Z a-z 0-9 _ - . :")
    if not is_id(area):
        raise UserError("area must be a grid area code")
    if len(password) < 8:
        raise UserError("password must have at least 8 characters")
    if display_name is not None:
        display_name = display_name.strip()
        if not 1 <= len(display_name) <= 32 or not display_name.isprintable():
            raise UserError("display name must be 1-32 printable characters")
    known = conn.execute("SELECT level FROM areas WHERE code=?", [area]).fetchone()
    if known is not None and known[0] != role:
        raise UserError(f"area {area} is a {known[0]}, not a {role}")
    pw = hash_password(password)
    with transaction(conn):
        conn.execute(
            "INSERT INTO users(name, role, area, pw, created, display_name) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET role=excluded.role, area=excluded.area, pw=excluded.pw, disabled=0, "
            "display_name=coalesce(excluded.display_name, users.display_name)",
            [name, role, area, pw, now, display_name])
        user_id = conn.execute("SELECT id FROM users WHERE name=?", [name]).fetchone()[0]
        revoke_tokens(conn, user_id)  # a reset ends every session of the old password
    return user_id


def revoke_tokens(conn, user_id: int) -> int:
    """End every session of a user (inside the caller's transaction, if any)."""
    return conn.execute("DELETE FROM tokens WHERE user_id = ?", [user_id]).rowcount


def set_disabled(conn, name: str, disabled: bool) -> User:
    """Disable (and log out everywhere) or enable a user; UserError if unknown.
    An enabled user logs in again: the old sessions stay ended."""
    with transaction(conn):
        row = conn.execute("SELECT id, name, role, area FROM users WHERE name=?", [name]).fetchone()
        if row is None:
            raise UserError(f"no user {name!r}")
        conn.execute("UPDATE users SET disabled=? WHERE id=?", [1 if disabled else 0, row[0]])
        if disabled:
            revoke_tokens(conn, row[0])
    return _user(row)


def list_users(conn, now: int) -> list[dict]:
    """Every user with its state and how many sessions are open."""
    rows = conn.execute(
        "SELECT u.name, u.role, u.area, u.disabled, "
        "(SELECT count(*) FROM tokens t WHERE t.user_id = u.id AND t.expires > ?) FROM users u ORDER BY u.name",
        [now]).fetchall()
    return [{"name": r[0], "role": r[1], "area": r[2], "disabled": bool(r[3]), "sessions": r[4]} for r in rows]


def _user(row) -> User:
    return User(row[0], row[1], row[2], row[3])


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    """A hash to check unknown names against, made once: the same cost as a
    real check (not two scrypt runs, as hashing a fresh one each time was)."""
    if not _DUMMY:
        _DUMMY.append(hash_password(secrets.token_urlsafe(16)))
    return _DUMMY[0]


def stored_credentials(conn, name: str) -> tuple[int, str] | None:
    """(id, password hash) of an enabled user; a plain read, no transaction."""
    row = conn.execute("SELECT id, pw FROM users WHERE name=? AND disabled=0", [name]).fetchone()
    return (row[0], row[1]) if row else None


def verify(password: str, stored: tuple[int, str] | None) -> bool:
    """The password against what `stored_credentials` read: the scrypt run,
    to be called with no transaction open. Unknown names cost the same."""
    if stored is None:
        check_password(password, _dummy_hash())
        return False
    return check_password(password, stored[1])


def issue_token(conn, stored: tuple[int, str], now: int,
                ttl_ms: int = TOKEN_TTL_MS) -> tuple[str, User] | None:
    """A new session for the user `stored` was read for, in one short write
    transaction, or None when the user was disabled or its password changed
    since the read (the check ran on the old one)."""
    token = secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode()).hexdigest()
    with transaction(conn):
        row = conn.execute("SELECT id, name, role, area FROM users WHERE id=? AND pw=? AND disabled=0",
                           list(stored)).fetchone()
        if row is not None:
            conn.execute("DELETE FROM tokens WHERE expires < ?", [now])
            conn.execute("INSERT INTO tokens(hash, user_id, created, expires) VALUES (?, ?, ?, ?)",
                         [digest, row[0], now, now + ttl_ms])
            conn.execute("DELETE FROM tokens WHERE user_id = ? AND hash NOT IN (SELECT hash FROM tokens "
                         "WHERE user_id = ? ORDER BY created DESC, rowid DESC LIMIT ?)",
                         [row[0], row[0], MAX_TOKENS_PER_USER])
    return (token, _user(row)) if row is not None else None


def login(conn, name: str, password: str, now: int, ttl_ms: int = TOKEN_TTL_MS) -> tuple[str, User] | None:
    """Check the password (outside any transaction) and open a session."""
    stored = stored_credentials(conn, name)
    if not verify(password, stored):
        return None
    return issue_token(conn, stored, now, ttl_ms)


def by_token(conn, token: str, now: int) -> User | None:
    if not token or len(token) > 200:
        return None
    row = conn.execute(
        "SELECT u.id, u.name, u.role, u.area FROM tokens t JOIN users u ON u.id = t.user_id "
        "WHERE t.hash = ? AND t.expires > ? AND u.disabled = 0",
        [hashlib.sha256(token.encode()).hexdigest(), now]).fetchone()
    return _user(row) if row else None


def logout(conn, token: str) -> None:
    conn.execute("DELETE FROM tokens WHERE hash = ?", [hashlib.sha256(token.encode()).hexdigest()])


def inspector_for(conn, role: str, area: str | None) -> str | None:
    """The grid inspector responsible for an area (first by name when several)."""
    if not area:
        return None
    row = conn.execute("SELECT name FROM users WHERE role=? AND area=? AND disabled=0 ORDER BY name LIMIT 1",
                       [role, area]).fetchone()
    return row[0] if row else None


def user_by_name(conn, name: str) -> User | None:
    row = conn.execute("SELECT id, name, role, area FROM users WHERE name=? AND disabled=0", [name]).fetchone()
    return _user(row) if row else None


def audit(conn, now: int, user: User, action: str, target: str, detail: str = "") -> None:
    """One row per read of personal data (a subject's page, its purchases)."""
    conn.execute("INSERT INTO audit_log(time, \"user\", role, area, action, target, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 [now, user.name, user.role, user.area, action, target, detail[:500]])
