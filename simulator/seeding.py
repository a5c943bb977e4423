"""Seed a gateway database with a generated district, the way an operator
would: the files `District.write` produces go through the same functions the
gateway's import commands call (`grid import`, `subjects import`, `policy
import`, `catalogue import`), each validated whole before it is written, so a
district the simulator generates is one the real CLIs accept. Then one
terminal per shop is provisioned (record key, broker password, linked to its
shop) and the supervision accounts are created.

Runs before the gateway starts; imports into a running gateway work too (it
notices the new versions and pushes them to the terminals).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.enforcement import fleet, registry

from gateway.supervision import grid

from gateway.store import users
from gateway.store import Store, connect, db_errors, describe, is_postgres
from gateway.store.migrations import version as schema_version
from protocols import configsync
from simulator.district import District
from simulator.processes import terminal_config_text


@dataclass(frozen=True)
class Login:
    name: str
    role: str
    area: str
    area_name: str
    password: str


@dataclass
class Seeded:
    files: dict[str, Path]
    creds: dict[str, fleet.Credentials]       # terminal -> credentials
    logins: list[Login]


class DatabaseRefused(ValueError):
    """A --db the demo will not seed: unreachable, or holding a district already."""


# Tables whose rows mean someone's district lives here (the baseline migration
# itself fills config_sections with the shipped defaults, so that one does not count).
DISTRICT_TABLES = ("areas", "shops", "subjects", "terminals", "records", "users")


def check_empty(db) -> None:
    """Refuse, before writing anything, a database the demo cannot reach or one
    that holds another district's data: seeding would mix two districts, and
    the fresh terminals' ledgers would restart at sequence 1 against stored
    records. The demo never drops or empties a database; it asks for an empty one."""
    name = describe(db)
    if is_postgres(db):
        import psycopg

        try:   # a short timeout of its own: the pool would wait 30 s for a server that is not there
            psycopg.connect(db, connect_timeout=5).close()
        except psycopg.Error as err:
            reason = " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
            raise DatabaseRefused(f"cannot reach the database {name}: {reason}") from None
    try:
        conn = connect(db, migrate=False)
    except (OSError, *db_errors()) as err:
        raise DatabaseRefused(f"cannot open the database {name}: {err}") from None
    try:
        if schema_version(conn) == 0:
            return
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in DISTRICT_TABLES}
        held = {t: n for t, n in counts.items() if n}
        if held:
            areas = conn.execute("SELECT code, name FROM areas WHERE level = 'district' ORDER BY code").fetchall()
            which = ", ".join(f"{n} ({c})" for c, n in areas) or "a district"
            rows = ", ".join(f"{t} {n:,}" for t, n in held.items())
            raise DatabaseRefused(f"the database {name} already holds {which}: {rows}. The demo seeds its own "
                                  "district into an empty database and never drops one: create a new database "
                                  "(createdb) and pass that")
    except db_errors() as err:
        raise DatabaseRefused(f"cannot read the database {name}: {err}") from None
    finally:
        conn.close()


def import_files(db: Path | str, files: dict[str, Path], now_ms: int) -> None:
    conn = connect(db)
    try:
        grid.import_grid(conn, grid.load_file(files["grid"]), str(files["grid"]))
        subjects = registry.parse_subjects(files["subjects"].read_text("utf-8"), files["subjects"].name)
        registry.import_subjects(conn, subjects, now_ms)
        registry.set_section(conn, configsync.PARAMS, registry.load_params(str(files["policy"])), now_ms)
        registry.set_section(conn, configsync.CATALOGUE, registry.load_catalogue(str(files["catalogue"])), now_ms)
    finally:
        conn.close()


def add_logins(db: Path | str, district: District, now_ms: int, town_index: int = 0) -> list[Login]:
    """A district account and one town account, with fresh random passwords
    (printed by the demo: throwaway data, but no password worth guessing)."""
    town = district.towns[town_index]
    # the names the dashboard shows for them (assignees in the queue), as
    # colleagues would know them
    wanted = [("district", "district", district.code, district.name, "周建华（区农业农村局）"),
              ("town", "town", town.code, town.name, "陈晓梅（%s）" % town.name)]
    conn = connect(db)
    out = []
    try:
        for name, role, area, area_name, display_name in wanted:
            password = secrets.token_urlsafe(9)
            users.add_user(conn, name, role, area, password, now_ms, display_name=display_name)
            out.append(Login(name, role, area, area_name, password))
    finally:
        conn.close()
    return out


def provision(db: Path | str, district: District, now_ms: int) -> dict[str, fleet.Credentials]:
    store = Store(db)
    try:
        return {s.terminal: fleet.provision(store, s.terminal, s.id, now_ms) for s in district.shops}
    finally:
        store.close()


def counter_toml(district: District, clerk: str = "clerk1", deadline_ms: int = 1500) -> str:
    """The agent's [counter] section: trust the district registry's card key."""
    return (f'\n[counter]\ndeadline_ms = {deadline_ms}\nregistry_keys = ["{district.registry_public_key.hex()}"]\n'
            f'clerk = "{clerk}"\n')


def write_terminal_configs(directory: Path, district: District, creds: dict[str, fleet.Credentials],
                           broker_url: str) -> dict[str, Path]:
    """One `python -m firmware run --config` file per shop."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for shop in district.shops:
        path = directory / f"{shop.terminal}.toml"
        text = terminal_config_text(creds[shop.terminal], broker_url, directory / f"{shop.terminal}.ledger.db",
                                    shop=shop.id)
        path.write_text(text + counter_toml(district), "utf-8")
        out[shop.terminal] = path
    return out


def trust_registry(db: Path | str, district: District, now_ms: int) -> None:
    """`gateway subjects keys add`: the gateway checks the cards authorization
    requests show against the district registry's key, as the terminals do."""
    conn = connect(db)
    try:
        registry.add_keys(conn, [district.registry_public_key], now_ms)
    finally:
        conn.close()


def seed(db: Path | str, district: District, directory: Path, now_ms: int | None = None) -> Seeded:
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    files = district.write(directory)
    import_files(db, files, now_ms)
    trust_registry(db, district, now_ms)
    creds = provision(db, district, now_ms)
    logins = add_logins(db, district, now_ms)
    return Seeded(files, creds, logins)
