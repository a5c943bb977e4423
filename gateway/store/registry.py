"""The registry repository: the subjects, the registry keys that sign their
cards, the district-wide configuration sections (catalogue, params,
revocations), and where a terminal stands on the grid, as the enforcement
wing reads them (gateway/enforcement/registry.py, quota.py, authz.py,
subjects_view.py). What is valid to store, and who may see which subject,
is decided there; this module only reads and writes the rows.

A subject's row keeps its whole entry as JSON text (`data`), ID numbers and
all; only `id`, `town` and `status` are columns. Each import is one new
registry revision (`subjects_rev` in quota_meta), which is also the version
of every terminal's `subjects` section.

The grid's tables (`shops`, `areas`) and the credit grades are written by
supervision (gateway/supervision/grid.py, cases.py); the reads the registry's
users make of them are here until those concerns have repositories of their
own.
"""

from __future__ import annotations

import json

from gateway.store.dialect import json_pairs_text, json_text, json_values


# ---------------------------------------------------------------- subjects

def subject_entry(conn, subject: str) -> dict | None:
    """The stored entry of a subject (its `data`), or None if unknown."""
    row = conn.execute("SELECT data FROM subjects WHERE id = ?", [subject]).fetchone()
    return json.loads(row[0]) if row else None


def subject_rows(conn, subjects: list[str]) -> list[dict]:
    """Every column of the rows of `subjects` the registry knows, as
    {column: value}, in one query (a month's buyers are thousands)."""
    cursor = conn.execute(f"SELECT * FROM subjects WHERE id IN ({json_values(conn)})", [json.dumps(subjects)])
    cols = [c[0] for c in cursor.description]
    return [dict(zip(cols, row)) for row in cursor.fetchall()]


def known_subjects(conn, subjects: list[str]) -> set[str]:
    """Those of `subjects` the registry holds."""
    return {row[0] for row in conn.execute(f"SELECT id FROM subjects WHERE id IN ({json_values(conn)})",
                                           [json.dumps(subjects)])}


def registry_known(conn) -> bool:
    """Whether a registry was imported: an empty one says nothing about anybody."""
    return conn.execute("SELECT 1 FROM subjects LIMIT 1").fetchone() is not None


def subjects_of_town(conn, town: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT id FROM subjects WHERE town = ?", [town])]


def subjects_of_village(conn, village: str) -> list[str]:
    """The village's `place` search key finds its subjects by index (a town
    of the same code would too: the JSON field decides). Config push asks
    this for every terminal's scope: a scan parsing every subject's JSON took
    63 ms at 20,000 subjects on PostgreSQL (0.5 ms by index), and kept a
    server backend at 63 % of a core for a season of a thousand terminals."""
    return [r[0] for r in conn.execute(
        f"SELECT s.id FROM subject_keys k JOIN subjects s ON s.id = k.subject "
        f"WHERE k.kind = 'place' AND k.key = ? AND {json_text(conn, 's.data', 'village')} = ?", [village, village])]


def put_subjects(conn, entries: list[dict], rev: int, now_ms: int) -> None:
    """Upsert entries (each replaces the stored one, its search keys too) as
    registry revision `rev`, inside the caller's transaction."""
    for entry in entries:
        conn.execute(
            "INSERT INTO subjects(id, town, status, data, rev, updated) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET town = excluded.town, status = excluded.status, data = excluded.data, "
            "rev = excluded.rev, updated = excluded.updated",
            [entry["id"], entry.get("town"), entry["status"], json.dumps(entry, ensure_ascii=False), rev, now_ms])
        put_search_keys(conn, entry["id"], entry)


# ---------------------------------------------------------------- search keys

# The fields of an entry that hold an ID number (身份证号) or a
# unified social credit code (统一社会信用代码): registries name them differently.
ID_FIELDS = ("id_number", "id_card_no", "id_card", "idcard", "id_no", "credit_code", "uscc")
NAME_GRAM_FROM = 200   # a name longer than this (no person's) is indexed by its first 200 characters


def name_grams(text: str) -> set[str]:
    """The single characters and pairs of characters of `text`, folded: a
    name is found from any part of it by looking up the pairs of the part
    (one character: the character), never by reading every entry."""
    text = text.casefold()[:NAME_GRAM_FROM]
    return set(text) | {text[i:i + 2] for i in range(len(text) - 1)}


def search_keys(entry: dict) -> set[tuple[str, str]]:
    """(kind, key) by which the desk finds a subject: `name` grams, each
    `card` UID, each `id` number (upper case), and the `place` (town and
    village) it is registered in, so a village's staff start from their village."""
    keys = {("place", entry[f]) for f in ("town", "village") if isinstance(entry.get(f), str) and entry[f]}
    if isinstance(entry.get("name"), str):
        keys |= {("name", g) for g in name_grams(entry["name"])}
    keys |= {("card", c) for c in entry.get("cards") or [] if isinstance(c, str) and c}
    keys |= {("id", entry[f].upper()) for f in ID_FIELDS if isinstance(entry.get(f), str) and entry[f]}
    return keys


def put_search_keys(conn, subject: str, entry: dict) -> None:
    conn.execute("DELETE FROM subject_keys WHERE subject = ?", [subject])
    keys = sorted(search_keys(entry))
    if keys:
        conn.execute(f"INSERT INTO subject_keys(kind, key, subject) SELECT j.k, j.v, ? FROM {json_pairs_text(conn)} "
                     "WHERE true ON CONFLICT DO NOTHING", [subject, json.dumps(keys, ensure_ascii=False)])


def holding(conn, kind: str, keys: list[str]) -> tuple[str, list]:
    """A subquery of the subjects holding any one of `keys` of `kind` (one
    parameter for all of them: a province has tens of thousands of places),
    for a few keys' worth of subjects (a village's, a town's)."""
    return (f"SELECT subject FROM subject_keys WHERE kind = ? AND key IN ({json_values(conn)})",
            [kind, json.dumps(keys, ensure_ascii=False)])


def holds(conn, kind: str, keys: list[str]) -> tuple[str, list]:
    """A condition on the subject row `s`: it holds any one of `keys` of
    `kind`, checked subject by subject (for when most subjects do)."""
    return (f"EXISTS (SELECT 1 FROM subject_keys h WHERE h.subject = s.id AND h.kind = ? "
            f"AND h.key IN ({json_values(conn)}))", [kind, json.dumps(keys, ensure_ascii=False)])


def keyed(kind: str, keys: list[str]) -> tuple[str, list]:
    """A condition on the subject row `s`: it has every one of `keys` of
    `kind` (the subject_keys index answers it)."""
    sql = " AND ".join("s.id IN (SELECT subject FROM subject_keys WHERE kind = ? AND key = ?)" for _ in keys)
    return f"({sql})", [x for key in keys for x in (kind, key)]


def rebuild_search_keys(conn) -> int:
    """Every subject's keys from its stored entry (migration 6); returns how many subjects."""
    n = 0
    for sid, data in conn.execute("SELECT id, data FROM subjects").fetchall():
        try:
            entry = json.loads(data)
        except ValueError:
            continue
        if isinstance(entry, dict):
            put_search_keys(conn, sid, entry)
            n += 1
    return n


def bump_subjects_rev(conn) -> int:
    """A new version of every terminal's `subjects` section (inside the
    caller's transaction): for a registry import, and for what the section
    carries from elsewhere (a credit grade, a village's name)."""
    return conn.execute("UPDATE quota_meta SET value = value + 1 WHERE key = 'subjects_rev' "
                        "RETURNING value").fetchone()[0]


# ---------------------------------------------------------------- configuration sections

def section_versions(conn) -> list[tuple[str, int]]:
    """(name, version) of every stored section, by name."""
    return conn.execute("SELECT name, version FROM config_sections ORDER BY name").fetchall()


def section_version(conn, name: str) -> int | None:
    row = conn.execute("SELECT version FROM config_sections WHERE name = ?", [name]).fetchone()
    return row[0] if row else None


def section_content(conn, name: str):
    """The current content of a section (parsed), or None before its first import."""
    row = conn.execute("SELECT content FROM config_sections WHERE name = ?", [name]).fetchone()
    return json.loads(row[0]) if row else None


def put_section(conn, name: str, version: int, text: str, now_ms: int) -> None:
    conn.execute("INSERT INTO config_sections(name, version, content, updated) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT(name) DO UPDATE SET version = excluded.version, content = excluded.content, "
                 "updated = excluded.updated", [name, version, text, now_ms])


# ---------------------------------------------------------------- registry keys

def add_key(conn, key_id: str, public_key: str, now_ms: int) -> None:
    """Trust a key (hex id and hex key); a key trusted already stays as it was."""
    conn.execute("INSERT INTO registry_keys(key_id, public_key, added) VALUES (?, ?, ?) "
                 "ON CONFLICT(key_id) DO NOTHING", [key_id, public_key, now_ms])


def remove_key(conn, public_key: str) -> None:
    conn.execute("DELETE FROM registry_keys WHERE public_key = ?", [public_key])


def trusted_keys(conn) -> list[bytes]:
    """The registry keys the gateway trusts, oldest first; none before the first `keys add`."""
    return [bytes.fromhex(k) for (k,) in conn.execute("SELECT public_key FROM registry_keys ORDER BY added, key_id")]


def keys_stamp(conn) -> tuple:
    """A cheap value that changes whenever the trusted keys do."""
    return tuple(conn.execute("SELECT count(*), coalesce(max(added), 0), coalesce(max(key_id), '') "
                              "FROM registry_keys").fetchone())


# ---------------------------------------------------------------- the grid, as the registry's users read it

def shop_place(conn, shop: str) -> tuple | None:
    """(town, village, designated) of a shop on the grid, or None if it is not on record."""
    return conn.execute("SELECT town, village, designated FROM shops WHERE id = ?", [shop]).fetchone()


def village_names(conn, codes: list[str]) -> dict[str, str]:
    """{code: name} of those of `codes` that are villages on the grid."""
    return dict(conn.execute("SELECT code, name FROM areas WHERE level = 'village' "
                             f"AND code IN ({json_values(conn)})", [json.dumps(codes)]))


def credit_grades(conn, subjects: list[str]) -> dict[str, str]:
    """{subject: grade} of those of `subjects` with a grade on record
    (gateway/supervision/cases.py keeps them; a subject without one is A)."""
    return dict(conn.execute("SELECT subject, grade FROM credit_grades "
                             f"WHERE subject IN ({json_values(conn)})", [json.dumps(subjects)]))
