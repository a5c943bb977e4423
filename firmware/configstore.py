"""The terminal's last synced configuration and its offline balance cache, in
its own SQLite file (never the ledger: the ledger is the shop's legal record
and append-only; this is a replaceable copy of the gateway's data).

What survives a restart here is exactly what an offline decision needs: the
catalogue, the policy params, the shop, the subjects of the shop's town (and
recent buyers), their balances as the gateway last reported them, revoked
cards, and the face gallery. A terminal restarted without a network decides
(and identifies faces) from this copy.

The face gallery is the one section not kept in this file: its encodings are
sealed under the device key in their own file (`firmware/face/synced.py`, given
as `gallery`); the `sections` row keeps only its summary (version, digest, size,
counts), never an encoding in the clear.

Balances. The gateway's figures arrive with `acked`: the highest of this
terminal's ledger seqs they already include (its end-to-end ack watermark when
the figures were taken). The terminal's own offline sales and voids are kept in
`local_usage` by ledger seq, so the balance an offline decision sees is

    used = gateway's used + sum(local moves with seq > acked)

which counts each local sale exactly once whether or not the gateway had it
yet (a record stored above the watermark is counted twice, which errs on the
side of selling less). Moves are indexed after each ledger commit and, after a
crash between the two (or a power cut losing this file's last writes), re-derived
from the ledger at start-up (`index_ledger`).

The file holds the shop's subjects, so it is 0600 from its first byte, in a
0700 directory when the agent creates it (`firmware.files.private_sqlite_file`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path

from firmware.files import private_sqlite_file
from protocols import authz, catalogue as _catalogue, configsync, facegallery, policy

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sections (
    name        TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    content     TEXT NOT NULL,
    updated     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS subjects (
    id          TEXT PRIMARY KEY,
    data        TEXT NOT NULL,
    source      TEXT NOT NULL,      -- town (from the subjects section) or recent (from an authorization)
    updated     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS balances (
    subject     TEXT PRIMARY KEY,
    used        TEXT NOT NULL,      -- {category: {period: used}} as the gateway reported
    rev         INTEGER NOT NULL,   -- the gateway's quota revision of those figures
    acked       INTEGER NOT NULL    -- this terminal's seqs they include
);
CREATE TABLE IF NOT EXISTS local_usage (
    seq         INTEGER PRIMARY KEY,
    subject     TEXT NOT NULL,
    moves       TEXT NOT NULL,      -- [[category, period, amount], ...]
    time        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS local_usage_subject ON local_usage(subject, seq);
CREATE TABLE IF NOT EXISTS meta (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);
"""


class ConfigStore:
    """Thread-safe: the MQTT thread applies synced sections while the counter decides."""

    def __init__(self, path: str | Path, wall_ms, gallery=None):
        self.path = Path(path)
        self.wall_ms = wall_ms
        self._gallery = gallery     # firmware.face.synced.SyncedGallery, or None: keep the summary only
        self._lock = threading.RLock()
        try:
            private_sqlite_file(self.path)  # 0600 in a 0700 directory: subjects, balances, revoked cards
        except OSError as err:
            log.warning("config database not made private path=%s: %s", self.path, err)
        self.conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL, not FULL: everything here can be rebuilt (sections are pushed
        # again when the reported versions are older, local moves re-derived from
        # the ledger), so a sale does not pay a second fsync for this file.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        self._versions: dict[str, int] = {}
        self._content: dict[str, object] = {}
        self._index = None
        self._revoked: frozenset = frozenset()
        self._subjects: dict[str, dict] = {}
        self._load()

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def _load(self) -> None:
        for name, version, content in self.conn.execute("SELECT name, version, content FROM sections"):
            self._versions[name] = version
            self._content[name] = json.loads(content)
        self._derive()
        self._subjects = {row[0]: json.loads(row[1]) for row in self.conn.execute("SELECT id, data FROM subjects")}
        self._load_gallery()

    def _load_gallery(self) -> None:
        """Use the sealed gallery file; report its version only if the file is
        the one that version recorded (else the gateway sends it again)."""
        if self._gallery is None:
            return
        digest = self._gallery.load()
        held = self._content.get(configsync.GALLERY)
        if held is not None and (digest is None or not isinstance(held, dict) or held.get("digest") != digest):
            log.warning("face gallery file does not match its synced version; asking for it again "
                        "version=%s", self._versions.get(configsync.GALLERY))
            self.conn.execute("DELETE FROM sections WHERE name = ?", [configsync.GALLERY])
            del self._versions[configsync.GALLERY]
            del self._content[configsync.GALLERY]

    def _derive(self) -> None:
        cat = self._content.get(configsync.CATALOGUE)
        self._index = _catalogue.Index(cat) if cat else None
        self._revoked = frozenset((self._content.get(configsync.REVOCATIONS) or {}).get("cards", ()))

    # -- what the counter reads

    def versions(self) -> dict[str, int]:
        with self._lock:
            return dict(self._versions)

    def versions_map(self) -> dict[str, str]:
        """The status message's `versions`: what this terminal runs."""
        return configsync.versions_map(self.versions())

    def section(self, name: str):
        return self._content.get(name)

    def catalogue(self) -> dict | None:
        return self._content.get(configsync.CATALOGUE)

    def params(self) -> dict | None:
        return self._content.get(configsync.PARAMS)

    def shop(self) -> dict | None:
        return self._content.get(configsync.SHOP)

    def index(self):
        """catalogue.Index of the synced catalogue (scanning), or None."""
        return self._index

    def revoked(self) -> frozenset:
        return self._revoked

    def gallery(self) -> dict | None:
        """The synced gallery's summary (digest, size, subjects, rows); the
        encodings are in the face service (`firmware.face.synced`)."""
        return self._content.get(configsync.GALLERY)

    def subject(self, subject: str) -> dict | None:
        return self._subjects.get(subject)

    def used(self, subject: str) -> dict:
        """{category: {period: used}}: the gateway's figures plus this terminal's
        own offline sales and voids the gateway had not counted yet."""
        with self._lock:
            row = self.conn.execute("SELECT used, acked FROM balances WHERE subject = ?", [subject]).fetchone()
            used = json.loads(row[0]) if row else {}
            acked = row[1] if row else 0
            for (moves,) in self.conn.execute("SELECT moves FROM local_usage WHERE subject = ? AND seq > ?",
                                              [subject, acked]):
                for category, period, amount in json.loads(moves):
                    per = used.setdefault(category, {})
                    per[period] = per.get(period, 0) + amount
        return used

    # -- what sync and authorization write

    def apply_section(self, name: str, version: int, content) -> None:
        """Replace one section (already digest- and schema-checked) in one transaction.

        The gallery is also decoded, then sealed and written to its own file
        before its row is committed (raises configsync.Invalid, changing
        nothing, when it cannot be used); the face service switches to it after
        the commit."""
        now = self.wall_ms()
        prepared = None
        if name == configsync.GALLERY:
            if self._gallery is not None:
                prepared = self._gallery.prepare(content)
                self._gallery.store(prepared[0])
            content = facegallery.summary(content)
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                if name == configsync.SUBJECTS:
                    self.conn.execute("DELETE FROM subjects WHERE source = 'town'")
                    for entry in content["subjects"]:
                        self.conn.execute("INSERT OR REPLACE INTO subjects(id, data, source, updated) VALUES (?, ?, 'town', ?)",
                                          [entry["id"], json.dumps(entry, ensure_ascii=False), now])
                elif name == configsync.BALANCES:
                    for subject, used in content["used"].items():
                        self._set_balance(subject, used, content["rev"], content["acked"])
                    self._prune(content["acked"])
                self.conn.execute("INSERT OR REPLACE INTO sections(name, version, content, updated) VALUES (?, ?, ?, ?)",
                                  [name, version, json.dumps(content, ensure_ascii=False), now])
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self._versions[name] = version
            self._content[name] = content
            if name in (configsync.CATALOGUE, configsync.REVOCATIONS):
                self._derive()
            if name == configsync.SUBJECTS:
                self._subjects = {row[0]: json.loads(row[1]) for row in self.conn.execute("SELECT id, data FROM subjects")}
        if prepared is not None:
            self._gallery.use(prepared[1], content["digest"])
        log.info("config section applied section=%s version=%d", name, version)

    def _set_balance(self, subject: str, used: dict, rev: int, acked: int) -> None:
        """Keep the newer of the stored and the given figures (a push may be
        older than the answer to an authorization made meanwhile)."""
        self.conn.execute(
            "INSERT INTO balances(subject, used, rev, acked) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(subject) DO UPDATE SET used = excluded.used, rev = excluded.rev, acked = excluded.acked "
            "WHERE excluded.rev >= balances.rev",
            [subject, json.dumps(used), rev, acked])

    def _prune(self, acked: int) -> None:
        """Local moves every cached figure already includes are not needed any more."""
        low = self.conn.execute("SELECT min(acked) FROM balances").fetchone()[0]
        if low:
            self.conn.execute("DELETE FROM local_usage WHERE seq <= ?", [min(low, acked)])

    def learn(self, response: dict) -> None:
        """Remember what an online authorization told us: the subject's registry
        entry (a recent buyer, cached for offline use) and its balances."""
        subject = response.get("subject")
        with self._lock:
            if subject:
                self.conn.execute(
                    "INSERT INTO subjects(id, data, source, updated) VALUES (?, ?, 'recent', ?) "
                    "ON CONFLICT(id) DO UPDATE SET data = excluded.data, updated = excluded.updated",
                    [subject["id"], json.dumps(subject, ensure_ascii=False), self.wall_ms()])
                self._subjects[subject["id"]] = subject
            if "used" in response and "rev" in response:
                who = subject["id"] if subject else None
                if who:
                    self._set_balance(who, response["used"], response["rev"], response.get("acked", 0))

    def add_local(self, seq: int, subject: str, moves: list, time_ms: int) -> None:
        if not moves:
            self.mark_indexed(seq)
            return
        with self._lock:
            self.conn.execute("INSERT OR IGNORE INTO local_usage(seq, subject, moves, time) VALUES (?, ?, ?, ?)",
                              [seq, subject, json.dumps(moves), time_ms])
            self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('indexed', ?)",
                              [str(max(seq, self._indexed()))])

    def mark_indexed(self, seq: int) -> None:
        """Ledger rows up to `seq` need no re-indexing at the next start."""
        with self._lock:
            self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('indexed', ?)",
                              [str(max(seq, self._indexed()))])

    def _indexed(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'indexed'").fetchone()
        return int(row[0]) if row else 0

    def index_ledger(self, ledger) -> int:
        """Derive local moves from ledger rows written since the last indexed one
        (after a crash between the ledger commit and `add_local`)."""
        done = 0
        with self._lock:
            after = self._indexed()
            while True:
                rows = ledger.pending(after, 500)
                if not rows:
                    break
                for seq, text in rows:
                    record = json.loads(text)
                    moves = local_moves(record, self.params(), self._record_moves)
                    if moves:
                        self.add_local(seq, record["body"]["subject"], moves, record["time"])
                        done += 1
                    after = seq
                self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('indexed', ?)", [str(after)])
        return done

    def _record_moves(self, seq: int):
        row = self.conn.execute("SELECT moves FROM local_usage WHERE seq = ?", [seq]).fetchone()
        return json.loads(row[0]) if row else None

    def moves_of(self, seq: int):
        with self._lock:
            return self._record_moves(seq)


def sale_moves(consumption: dict, periods: dict, params: dict | None, date: str) -> list:
    """[[category, period, amount]] of a sale, periods from its decision."""
    out = []
    for category in sorted(consumption):
        period = periods.get(category)
        if period is None and params and category in params.get("categories", {}):
            period = policy.period_of(params, category, date)
        out.append([category, period or date[:4], consumption[category]])
    return out


def local_moves(record: dict, params: dict | None, moves_of) -> list:
    """The local balance moves a ledger record makes: an offline sale adds its
    consumption; a void takes back what the voided sale added (exactly its
    moves when the sale was offline, else the void's own negative consumption:
    online sales are counted by the gateway, their void is local until it has it)."""
    body = record.get("body", {})
    date = authz.local_date(record["time"])
    if record.get("type") == "sale" and body.get("mode") == "offline" and body.get("consumption"):
        return sale_moves(body["consumption"], {}, params, date)
    if record.get("type") == "void" and body.get("subject"):
        sold = moves_of(body["voids"])
        if sold:
            return [[c, p, -a] for c, p, a in sold]
        if body.get("consumption"):
            return sale_moves(body["consumption"], {}, params, date)
    return []
