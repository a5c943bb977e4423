"""The gateway's whole schema, as of the first numbered migration: every table
and index of every concern, in one place. Later changes are new migrations
(`gateway/store/migrations.py`), never edits here: a database at version 1
was made by exactly this text.

Written in SQLite's dialect; `postgres()` gives PostgreSQL's (64-bit integers,
identity keys, BYTEA), so the two backends cannot drift apart column by column.
"""

from __future__ import annotations

import re

# -- records, terminals, quarantine, alerts (ingest)
RECORDS = [
    """CREATE TABLE IF NOT EXISTS records (
    rid         INTEGER PRIMARY KEY,   -- storage order, for followers (gateway/ingest/follow.py)
    terminal    TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    type        TEXT NOT NULL,
    time        INTEGER NOT NULL,
    digest      TEXT NOT NULL,
    prev        TEXT NOT NULL,
    record      TEXT NOT NULL,
    received    INTEGER NOT NULL
)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS records_key ON records(terminal, seq)",
    """CREATE TABLE IF NOT EXISTS terminals (
    id          TEXT PRIMARY KEY,
    key         TEXT NOT NULL,
    shop        TEXT,
    mqtt_hash   TEXT,
    acked_upto  INTEGER NOT NULL DEFAULT 0,
    head        INTEGER,
    state       TEXT,
    last_seen   INTEGER,
    created     INTEGER
)""",
    """CREATE TABLE IF NOT EXISTS quarantine (
    id          INTEGER PRIMARY KEY,
    received    INTEGER NOT NULL,
    topic       TEXT NOT NULL,
    terminal    TEXT,
    seq         INTEGER,
    accountable INTEGER NOT NULL DEFAULT 0,
    reason      TEXT NOT NULL,
    detail      TEXT,
    payload     BLOB
)""",
    "CREATE INDEX IF NOT EXISTS quarantine_terminal ON quarantine(terminal, seq)",
    "CREATE INDEX IF NOT EXISTS quarantine_received ON quarantine(terminal, received)",
    """CREATE TABLE IF NOT EXISTS quarantine_dropped (  -- rejects over a terminal's hourly quarantine budget
    terminal    TEXT NOT NULL,
    hour        INTEGER NOT NULL,              -- gateway time in ms // 3600000
    reason      TEXT NOT NULL,
    count       INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    PRIMARY KEY (terminal, hour, reason)
)""",
    """CREATE TABLE IF NOT EXISTS missing (
    terminal    TEXT NOT NULL,
    seq_from    INTEGER NOT NULL,
    seq_to      INTEGER NOT NULL,
    noticed     INTEGER NOT NULL,
    PRIMARY KEY (terminal, seq_from)
)""",
    """CREATE TABLE IF NOT EXISTS followers (  -- gateway/ingest/follow.py: each follower's cursor in `rid`
    name        TEXT PRIMARY KEY,
    rid         INTEGER NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS master_key (  -- KeyVault: proves the master key at open
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    check_value TEXT NOT NULL              -- a known text sealed under the master key
)""",
    """CREATE TABLE IF NOT EXISTS alerts (
    id          INTEGER PRIMARY KEY,
    time        INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    terminal    TEXT,
    seq         INTEGER,
    seq_to      INTEGER,
    detail      TEXT,
    UNIQUE (kind, terminal, seq)
)""",
]

# -- violations (every detector reports here: gateway/store/violations.py)
VIOLATIONS = [
    """CREATE TABLE IF NOT EXISTS violations (
    id          INTEGER PRIMARY KEY,
    time        INTEGER NOT NULL,
    code        TEXT NOT NULL,
    dedup       TEXT NOT NULL UNIQUE,
    subject     TEXT,
    shop        TEXT,
    terminal    TEXT,
    seq         INTEGER,
    detail      TEXT NOT NULL DEFAULT '{}'
)""",
    "CREATE INDEX IF NOT EXISTS violations_subject ON violations(subject)",
    "CREATE INDEX IF NOT EXISTS violations_time ON violations(time)",
]

# -- the authoritative quota ledger, the registry and the faces (their repositories: gateway/store/quota.py,
#    gateway/store/registry.py, gateway/store/faces.py)
QUOTA = [
    """CREATE TABLE IF NOT EXISTS subjects (
    id          TEXT PRIMARY KEY,
    town        TEXT,
    status      TEXT NOT NULL,
    data        TEXT NOT NULL,      -- the entry as protocols.policy reads it (JSON)
    rev         INTEGER NOT NULL,   -- registry revision of the last change
    updated     INTEGER NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS subjects_town ON subjects(town)",
    """CREATE TABLE IF NOT EXISTS config_sections (
    name        TEXT PRIMARY KEY,   -- catalogue, params, revocations (the gallery is per shop: gateway/enforcement/faces.py)
    version     INTEGER NOT NULL,
    content     TEXT NOT NULL,
    updated     INTEGER NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS quota_used (
    subject     TEXT NOT NULL,
    category    TEXT NOT NULL,
    period      TEXT NOT NULL,
    used        INTEGER NOT NULL,
    rev         INTEGER NOT NULL,   -- quota revision of the last change
    PRIMARY KEY (subject, category, period)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS quota_moves (
    id          INTEGER PRIMARY KEY,
    time        INTEGER NOT NULL,
    subject     TEXT NOT NULL,
    category    TEXT NOT NULL,
    period      TEXT NOT NULL,
    delta       INTEGER NOT NULL,
    kind        TEXT NOT NULL,      -- auth, sale, match, void, release
    terminal    TEXT,
    seq         INTEGER,
    auth        INTEGER
)""",
    "CREATE INDEX IF NOT EXISTS quota_moves_subject ON quota_moves(subject, time)",
    """CREATE TABLE IF NOT EXISTS authorizations (
    id          INTEGER PRIMARY KEY,   -- wire id "A<id>"
    terminal    TEXT NOT NULL,
    sale_id     TEXT NOT NULL,
    request     TEXT NOT NULL,         -- correlation id of the first request
    subject     TEXT,
    time        INTEGER NOT NULL,
    state       TEXT NOT NULL,         -- held, matched, released, refused, superseded
    consumption TEXT NOT NULL,         -- [[category, period, amount], ...]
    decision    TEXT,                  -- wire decision (JSON), replayed to a repeated request
    seq         INTEGER,               -- the sale record that matched it
    UNIQUE (terminal, sale_id)
)""",
    "CREATE INDEX IF NOT EXISTS authorizations_held ON authorizations(state, time)",
    """CREATE TABLE IF NOT EXISTS quota_sales (
    terminal    TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    sale_id     TEXT,
    subject     TEXT,
    shop        TEXT,
    mode        TEXT,
    time        INTEGER,
    auth        INTEGER,
    applied     TEXT NOT NULL,         -- [[category, period, amount], ...] this sale counts
    voided_by   INTEGER,
    PRIMARY KEY (terminal, seq)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS quota_sales_sale ON quota_sales(terminal, sale_id)",
    "CREATE INDEX IF NOT EXISTS quota_sales_subject ON quota_sales(subject)",
    """CREATE TABLE IF NOT EXISTS quota_meta (
    key         TEXT PRIMARY KEY,
    value       INTEGER NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS faces (
    subject     TEXT PRIMARY KEY,
    model       TEXT NOT NULL,
    count       INTEGER NOT NULL,
    encodings   BLOB NOT NULL,      -- count x 128 float32 little-endian (protocols/facegallery.py)
    rev         INTEGER NOT NULL,   -- faces revision of the last change
    updated     INTEGER NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS registry_keys (
    key_id      TEXT PRIMARY KEY,   -- card.key_id: first 4 bytes of SHA-256 of the key, hex
    public_key  TEXT NOT NULL,      -- 32-byte Ed25519 public key, hex
    added       INTEGER NOT NULL
)""",
]

# -- the supervision grid (gateway/store/grid.py; the registry file: gateway/supervision/grid.py)
GRID = [
    """CREATE TABLE IF NOT EXISTS areas (
    code    TEXT PRIMARY KEY,
    level   TEXT NOT NULL,
    name    TEXT NOT NULL,
    parent  TEXT
)""",
    """CREATE TABLE IF NOT EXISTS shops (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    village     TEXT,
    town        TEXT,
    district    TEXT,
    designated  INTEGER NOT NULL DEFAULT 0,
    hours       TEXT NOT NULL DEFAULT '',
    lat         REAL,
    lon         REAL,
    address     TEXT NOT NULL DEFAULT ''
)""",
    "CREATE INDEX IF NOT EXISTS shops_town ON shops(town)",
    "CREATE INDEX IF NOT EXISTS shops_village ON shops(village)",
]

# -- the rules' sales index and sweeps (gateway/store/sales.py, gateway/store/fleet.py's backlog samples,
# gateway/store/watermarks.py; written by gateway/supervision/rules/engine.py)
RULES = [
    """CREATE TABLE IF NOT EXISTS sales (
    terminal    TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    type        TEXT NOT NULL,
    time        INTEGER NOT NULL,
    received    INTEGER NOT NULL,
    day         TEXT NOT NULL,
    shop        TEXT,
    village     TEXT,
    town        TEXT,
    district    TEXT,
    subject     TEXT,
    card        TEXT,
    identity    TEXT,
    mode        TEXT,
    pesticide   INTEGER NOT NULL DEFAULT 0,
    fertilizer  INTEGER NOT NULL DEFAULT 0,
    consumption TEXT,
    subject_group TEXT,             -- the buyer's registry group at indexing time
    PRIMARY KEY (terminal, seq)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS sales_day_district ON sales(day, district, town, type, pesticide, fertilizer)",
    "CREATE INDEX IF NOT EXISTS sales_day_town ON sales(day, town, type, pesticide, fertilizer)",
    "CREATE INDEX IF NOT EXISTS sales_day_village ON sales(day, village, type, pesticide, fertilizer)",
    "CREATE INDEX IF NOT EXISTS sales_subject_time ON sales(subject, time)",
    "CREATE INDEX IF NOT EXISTS sales_card_time ON sales(card, time)",
    "CREATE INDEX IF NOT EXISTS sales_shop_time ON sales(shop, time)",
    """CREATE TABLE IF NOT EXISTS terminal_samples (
    terminal    TEXT NOT NULL,
    time        INTEGER NOT NULL,
    backlog     INTEGER NOT NULL,
    PRIMARY KEY (terminal, time)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS sweep_state (
    name        TEXT PRIMARY KEY,
    value       INTEGER NOT NULL
)""",
]
# The group index is created after the column is known to exist: databases
# made before groups lack `subject_group` (migration 1 adds it).
SALES_GROUP_INDEX = ("CREATE INDEX IF NOT EXISTS sales_group_time ON sales(subject_group, time) "
                     "WHERE subject_group IS NOT NULL")

# -- supervision accounts and their audit trail (gateway/store/users.py)
USERS = [
    """CREATE TABLE IF NOT EXISTS users (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    area        TEXT NOT NULL,
    pw          TEXT NOT NULL,
    created     INTEGER NOT NULL,
    disabled    INTEGER NOT NULL DEFAULT 0
)""",
    "CREATE INDEX IF NOT EXISTS users_area ON users(role, area)",
    """CREATE TABLE IF NOT EXISTS tokens (
    hash        TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    created     INTEGER NOT NULL,
    expires     INTEGER NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS audit_log (
    id          INTEGER PRIMARY KEY,
    time        INTEGER NOT NULL,
    user        TEXT NOT NULL,
    role        TEXT NOT NULL,
    area        TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT ''
)""",
    "CREATE INDEX IF NOT EXISTS audit_target ON audit_log(target)",
]

# -- the case workflow (gateway/store/cases.py, gateway/supervision/cases.py)
CASES = [
    """CREATE TABLE IF NOT EXISTS cases (
    id          INTEGER PRIMARY KEY,
    opened      INTEGER NOT NULL,
    updated     INTEGER NOT NULL,
    state       TEXT NOT NULL,
    shop        TEXT,
    subject     TEXT,
    terminal    TEXT,
    village     TEXT,
    town        TEXT,
    district    TEXT,
    level       TEXT NOT NULL,
    assignee    TEXT,
    deadline    INTEGER,
    codes       TEXT NOT NULL DEFAULT '',
    violations  INTEGER NOT NULL DEFAULT 0,
    result      TEXT,
    outcome     TEXT,
    closed      INTEGER
)""",
    "CREATE INDEX IF NOT EXISTS cases_state ON cases(state, updated)",
    "CREATE INDEX IF NOT EXISTS cases_town ON cases(town, state, updated)",
    "CREATE INDEX IF NOT EXISTS cases_village ON cases(village, state, updated)",
    "CREATE INDEX IF NOT EXISTS cases_district ON cases(district, state, updated)",
    "CREATE INDEX IF NOT EXISTS cases_subject ON cases(subject, outcome)",
    "CREATE INDEX IF NOT EXISTS cases_key ON cases(shop, subject, state)",
    "CREATE INDEX IF NOT EXISTS cases_due ON cases(deadline) WHERE state IN ('open', 'assigned')",
    """CREATE TABLE IF NOT EXISTS case_violations (
    violation   INTEGER PRIMARY KEY,
    case_id     INTEGER NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS case_violations_case ON case_violations(case_id)",
    """CREATE TABLE IF NOT EXISTS case_events (
    id          INTEGER PRIMARY KEY,
    case_id     INTEGER NOT NULL,
    time        INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT,
    detail      TEXT NOT NULL DEFAULT '{}'
)""",
    "CREATE INDEX IF NOT EXISTS case_events_case ON case_events(case_id, id)",
    "CREATE INDEX IF NOT EXISTS cases_outcome ON cases(outcome, closed)",
    """CREATE TABLE IF NOT EXISTS credit_grades (
    subject     TEXT PRIMARY KEY,   -- only subjects below A: no row means A
    grade       TEXT NOT NULL,
    updated     INTEGER NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS case_proposals (
    case_id     INTEGER PRIMARY KEY,  -- one close awaiting a second person per case
    outcome     TEXT NOT NULL,
    actor       TEXT NOT NULL,
    role        TEXT NOT NULL,
    time        INTEGER NOT NULL,
    notes       TEXT NOT NULL DEFAULT ''
)""",
    """CREATE TABLE IF NOT EXISTS case_photos (
    id          INTEGER PRIMARY KEY,
    case_id     INTEGER NOT NULL,
    time        INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    mime        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    path        TEXT NOT NULL
)""",
]

# -- the upstream feed's outbox (gateway/store/upstream_outbox.py, gateway/supervision/upstream.py)
OUTBOX = [
    """CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created     INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    sent        INTEGER
)""",
    "CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox(sent, id)",
    """CREATE TABLE IF NOT EXISTS upstream_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    last_attempt    INTEGER,
    last_success    INTEGER,
    last_error      TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,
    next_attempt    INTEGER,
    sent_upto       INTEGER NOT NULL DEFAULT 0
)""",
]

# -- fleet status (gateway/store/fleet.py, gateway/supervision/fleet_status.py)
FLEET = [
    """CREATE TABLE IF NOT EXISTS terminal_status (
    terminal    TEXT PRIMARY KEY,
    state       TEXT,
    status_time INTEGER,
    received    INTEGER,
    skew_ms     INTEGER,
    versions    TEXT
)""",
]

# -- notifications to inspectors (gateway/store/notifications.py, gateway/supervision/notify.py):
# a durable outbox, filled from case_events behind a cursor (sweep_state 'notify')
# -- migration 5: a terminal's quarantine budget counted in the database, so
# every ingest worker charges the same hour (gateway/ingest/writer.py)
QUARANTINE_SPENT = [
    """CREATE TABLE IF NOT EXISTS quarantine_spent (
    terminal    TEXT NOT NULL,
    hour        INTEGER NOT NULL,              -- gateway time in ms // 3600000
    n_rows      INTEGER NOT NULL,              -- rejects stored this hour
    n_bytes     INTEGER NOT NULL,              -- their payload bytes
    alerted     INTEGER NOT NULL DEFAULT 0,    -- the hour's quarantine_budget_exceeded alert is raised
    PRIMARY KEY (terminal, hour)
)""",
]

# -- migration 6: the keys the desk finds a subject by (gateway/store/registry.py
# search_keys): parts of the name, cards, ID numbers, looked up by index
SUBJECT_KEYS = [
    """CREATE TABLE IF NOT EXISTS subject_keys (
    kind        TEXT NOT NULL,                 -- name (one or two characters of it), card, id
    key         TEXT NOT NULL,
    subject     TEXT NOT NULL,
    PRIMARY KEY (kind, key, subject)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS subject_keys_subject ON subject_keys(subject)",
]

# -- migration 7: the cases not closed, with what the overview counts of them
# (gateway/api/queries.py overview_counts: per town or village, those holding
# a finding outside the watch list, read from `codes`), so the count reads
# this index alone instead of every case the district ever opened: 200,000
# cases a year at ten million records (bench/bench_dashboard.py). Town first:
# a town user's count is a range of it, a district user's all of it. `state`
# is a column too: SQLite reads a partial index alone only when it holds every
# column the query names, its own WHERE's included (PostgreSQL needs no such help).
CASES_OPEN = [
    "CREATE INDEX IF NOT EXISTS cases_open ON cases(town, village, district, codes, state) WHERE state <> 'closed'",
]

NOTIFICATIONS = [
    """CREATE TABLE IF NOT EXISTS notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created     INTEGER NOT NULL,
    case_id     INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    recipient   TEXT,
    dedup       TEXT NOT NULL UNIQUE,
    payload     TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    sent        INTEGER,
    last_error  TEXT
)""",
    "CREATE INDEX IF NOT EXISTS notifications_due ON notifications(sent, next_at)",
]

BASELINE = RECORDS + VIOLATIONS + QUOTA + GRID + RULES + USERS + CASES + OUTBOX + FLEET

# Counters the quota ledger, the registry and the face gallery bump (quota_meta).
META_COUNTERS = ("rev", "subjects_rev", "faces_rev")


_PG_RULES = [
    # a single-column INTEGER PRIMARY KEY is SQLite's rowid: an identity column,
    # unless a CHECK pins it to one row
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER PRIMARY KEY(?= CHECK)"), "BIGINT PRIMARY KEY"),
    (re.compile(r"^(\s+(?:rid|id))\s+INTEGER PRIMARY KEY\b", re.M),
     r"\1 BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER PRIMARY KEY\b"), "BIGINT PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),              # times are milliseconds: past 2**31
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\)\s*WITHOUT ROWID\s*$"), ")"),
    (re.compile(r"^(\s+)user(\s+TEXT)", re.M), r'\1"user"\2'),   # a reserved word in PostgreSQL
]


def postgres(statement: str) -> str:
    """One DDL statement of this module in PostgreSQL's dialect."""
    for pattern, replacement in _PG_RULES:
        statement = pattern.sub(replacement, statement)
    return statement
