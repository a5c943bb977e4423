"""The few SQL spellings SQLite and PostgreSQL do not share, in one place.

Everything else the gateway writes is the common subset both run alike:
`INSERT ... ON CONFLICT (...) DO NOTHING | DO UPDATE`, `RETURNING`,
`IS DISTINCT FROM`, `count(*) FILTER (WHERE ...)`, `?` placeholders (and
`:name` ones), which the PostgreSQL connection turns into psycopg's."""

from __future__ import annotations


def _sqlite(conn) -> bool:
    return getattr(conn, "dialect", "sqlite") == "sqlite"


def json_values(conn) -> str:
    """A subquery of the text values of a JSON array given as one parameter:
    `... WHERE id IN ({json_values(conn)})` with `json.dumps(ids)`. One
    parameter for any number of ids, so the statement text stays the same."""
    if _sqlite(conn):
        return "SELECT value FROM json_each(?)"
    return "SELECT jsonb_array_elements_text(CAST(? AS jsonb))"


def json_pairs(conn) -> str:
    """A FROM item `j` over a JSON array of [text, integer] pairs given as one
    parameter, with columns `j.k` and `j.n` (ingest moves many terminals'
    watermarks in one statement)."""
    if _sqlite(conn):
        return "(SELECT value->>0 AS k, value->>1 AS n FROM json_each(?)) AS j"
    return ("(SELECT value->>0 AS k, CAST(value->>1 AS BIGINT) AS n "
            "FROM jsonb_array_elements(CAST(? AS jsonb))) AS j")


def json_pairs_text(conn) -> str:
    """A FROM item `j` over a JSON array of [text, text] pairs given as one
    parameter, with columns `j.k` and `j.v`."""
    if _sqlite(conn):
        return "(SELECT value->>0 AS k, value->>1 AS v FROM json_each(?)) AS j"
    return "(SELECT value->>0 AS k, value->>1 AS v FROM jsonb_array_elements(CAST(? AS jsonb))) AS j"


def json_text(conn, column: str, key: str) -> str:
    """The text of `key` in the JSON object held (as text) by `column`;
    `column` and `key` are fixed names from the code, never data."""
    if not (column.replace("_", "").replace(".", "").isalnum() and key.replace("_", "").isalnum()):
        raise ValueError(f"json_text({column!r}, {key!r})")
    if _sqlite(conn):
        return f"json_extract({column}, '$.{key}')"
    return f"(CAST({column} AS jsonb) ->> '{key}')"


def for_update(conn) -> str:
    """` FOR UPDATE` on PostgreSQL (lock the rows read until the transaction
    ends: a follower's cursor that two processes may run), nothing on SQLite,
    whose BEGIN IMMEDIATE already holds the write lock."""
    return "" if _sqlite(conn) else " FOR UPDATE"
