"""Ingest: verified batches in, one durable group commit, then the acks.

Verification (JSON, schema, HMAC) runs in verifier processes as messages
arrive (gateway/ingest/pipeline.py); storing is one writer per gateway
process, which drains everything verified into a single transaction. One fsync then covers
hundreds of records, which is where the throughput comes from, and acks are
published only after that COMMIT, so an ack always means "on disk here".

Sequence bookkeeping per terminal (`Progress`): `upto` is the cumulative ack,
`above` the accounted sequence ranges beyond it (records that arrived early,
missing ranges). A jump in the sequence *as the terminal presents it* (the batch
says "after N" and then starts at N+2, or skips inside) means the terminal's
ledger lost rows: it is recorded in `missing` and alerted. A `prev` that does
not match the stored digest of the record before is a hash-chain break.

What a terminal can cost the gateway is bounded by that terminal (the trust
boundary in ARCHITECTURE.md): a record more than `SEQ_WINDOW` beyond its
acknowledged seq is refused (`seq_beyond_window`), so one forged far-off seq
cannot keep the terminal off the next-in-line path for good; and its
quarantine rows, payloads and per-record alerts are limited per hour
(`QuarantineBudget`): past the budget only counts per reason are kept, in
`quarantine_dropped`, with one `quarantine_budget_exceeded` alert.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from gateway.store import Store, transaction
from gateway.store.dialect import for_update, json_pairs, json_values
from gateway.store.records import insert_records, order_records, writing_alerts
from gateway.ingest.verified import Quarantine, Status
from gateway.ingest.verify import Batch, Entry
from gateway.ingest import alerts  # noqa: F401 - the texts of the alerts raised here
from protocols import envelope, topics
from protocols.clock import wall_ms as now_ms

log = logging.getLogger(__name__)

WRITE_LOCK_PATIENCE_S = 30.0  # how long the writer retries for the write lock (`transaction(spin=...)`)
ACK_INTERVAL = 0.02  # seconds: at most one ack per terminal this often while busy

# An honest terminal has at most its uplink window of records in flight beyond
# its watermark (at most `envelope.SEQ_WINDOW`, checked by the terminal's
# config), and its watermark is at most the gateway's ack: a seq further out
# than this beyond the ack is refused. docs/protocol.md, "Reasons".
SEQ_WINDOW = envelope.SEQ_WINDOW

HOUR_MS = 3_600_000
QUARANTINE_BYTES_PER_HOUR = 4 * 1024 * 1024  # per terminal: sixteen full-size messages
QUARANTINE_ROWS_PER_HOUR = 1000              # per terminal; an honest one quarantines next to nothing

@dataclass(frozen=True)
class QuarantineBudget:
    """What one terminal may put into the quarantine per clock hour (gateway
    time). A reject that does not fit is counted in `quarantine_dropped` (per
    terminal, hour and reason) instead of stored, without its own alert, and
    an accountable one (an altered record) is then not accounted for either:
    the terminal's ack stays below it, which costs that terminal alone.

    The hour's spending is a row in the database (`quarantine_spent`): every
    worker sharing the ingest charges the same budget, and the hour's one
    alert is raised by whichever worker drops first."""
    bytes: int = QUARANTINE_BYTES_PER_HOUR
    rows: int = QUARANTINE_ROWS_PER_HOUR


@dataclass
class Progress:
    upto: int = 0
    above: dict[int, int] = field(default_factory=dict)  # start -> end of accounted ranges beyond upto
    last_seq: int = 0          # most recent stored record, for the chain check
    last_digest: str = ""
    max_seq: int = 0

    def account(self, start: int, end: int) -> None:
        if start == self.upto + 1 and not self.above:  # the common case: next in line
            self.upto = end
            return
        if end <= self.upto:
            return
        start = max(start, self.upto + 1)
        if self.above.get(start, 0) < end:
            self.above[start] = end
        while self.upto + 1 in self.above:
            self.upto = max(self.upto, self.above.pop(self.upto + 1))
            # ranges that now start inside [.., upto] are absorbed too
            for s in [s for s in self.above if s <= self.upto + 1]:
                self.upto = max(self.upto, self.above.pop(s))


@dataclass
class Stats:
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    dropped: int = 0  # rejects over a terminal's quarantine budget: counted, not stored
    commits: int = 0
    alerts: int = 0


class Ingest:
    """The writer: verified items in (`process`), one transaction a group, acks
    out through `publish_ack` after the commit. `gateway run` feeds it from
    its verifier processes (gateway/ingest/pipeline.py).

    Several writers may share one database (one per `gateway run
    --share-group` worker), each taking any terminal's messages. What each
    keeps in memory about a terminal (`Progress`) is a cache of the
    database's state, checked under the terminal's row lock at the start of
    every transaction (`_claim`): order and exactly-once are the database's,
    whichever worker a message reaches."""

    def __init__(self, store: Store, publish_ack: Callable[[str, int, int | None], None],
                 wall_ms: Callable[[], int] = now_ms, budget: QuarantineBudget = QuarantineBudget()):
        self.store = store
        self.budget = budget
        self.publish_ack = publish_ack
        self.wall_ms = wall_ms
        self.stats = Stats()
        self._progress: dict[str, Progress] = {}
        self._rev: dict[str, int] = {}  # terminal -> its ingest_rev as this writer last wrote or read it
        self._fresh: list[tuple[str, Entry]] = []  # new records queued for the bulk insert
        self._ordered = False  # this transaction holds the records' order lock (`order_records`)
        self._pending_acks: dict[str, tuple[int, int | None]] = {}
        self._last_ack: dict[str, float] = {}

    def process(self, group: list, idle: Callable[[], bool]) -> bool:
        """Store one group of verified items in one transaction, then queue
        their acks and send those that are due (all of them if `idle()`).
        Returns False if the transaction failed: nothing of the group is
        acknowledged, terminals send it again, and the connection has been
        replaced (PostgreSQL restarted: this waits until it is back)."""
        try:
            acks = self._apply(group)
        except Exception:
            log.exception("ingest transaction failed; %d messages will be re-sent by terminals", len(group))
            self._recover()
            return False
        for terminal, upto, seen in acks:
            earlier = self._pending_acks.get(terminal)
            if earlier is not None and earlier[1] is not None and (seen is None or earlier[1] > seen):
                seen = earlier[1]  # keep the hint that records beyond upto are held
            self._pending_acks[terminal] = (upto, seen)
        self._send_acks(force=idle())
        return True

    def acks_pending(self) -> bool:
        return bool(self._pending_acks)

    def send_due_acks(self, force: bool) -> None:
        self._send_acks(force)

    def _send_acks(self, force: bool) -> None:
        """Publish pending acks: all of them when ingest is idle, otherwise
        each terminal's at most every ACK_INTERVAL. Under a flood of small
        messages this keeps one ack per terminal per interval instead of one
        per transaction; every ack still follows the commit it reports."""
        now = time.monotonic()
        for terminal in list(self._pending_acks):
            if force or now - self._last_ack.get(terminal, 0.0) >= ACK_INTERVAL:
                upto, seen = self._pending_acks.pop(terminal)
                self._last_ack[terminal] = now
                try:
                    self.publish_ack(terminal, upto, seen)
                except Exception:
                    log.exception("ack publish failed terminal=%s", terminal)

    # -- one transaction

    def _apply(self, group: list) -> list[tuple[str, int, int | None]]:
        now = self.wall_ms()
        conn = self.store.conn
        seen: dict[str, int | None] = {}
        touched: set[str] = set()
        with self.store.lock:
            try:
                with transaction(conn, spin=WRITE_LOCK_PATIENCE_S):
                    self._ordered = False
                    self._claim(conn, sorted({item.terminal for item in group if not isinstance(item, Quarantine)}))
                    for item in group:
                        if isinstance(item, Batch):
                            top = self._apply_batch(conn, item, now)
                            touched.add(item.terminal)
                            if top is not None:
                                seen[item.terminal] = max(top, seen.get(item.terminal) or 0)
                        elif isinstance(item, Status):
                            m = item.message
                            if m is None:
                                continue
                            conn.execute("UPDATE terminals SET state=?, last_seen=?, head=coalesce(?, head) WHERE id=?",
                                         [m["state"], now, m.get("head"), item.terminal])
                        else:
                            r = item.rejected
                            self._quarantine(conn, now, item.topic, r.terminal, None, False, r.reason, r.detail,
                                             item.payload)
                    self._flush(conn, now)
                    if touched:
                        progress = json.dumps([[t, self._progress[t].upto] for t in touched])
                        conn.execute(f"UPDATE terminals SET acked_upto = j.n, last_seen = ?, "
                                     f"ingest_rev = ingest_rev + 1 "
                                     f"FROM {json_pairs(conn)} WHERE terminals.id = j.k", [now, progress])
            except BaseException:
                self._fresh.clear()
                raise
        for terminal in touched:
            if terminal in self._rev:
                self._rev[terminal] += 1
        self.stats.commits += 1
        return [(t, self._progress[t].upto, seen.get(t)) for t in sorted(touched)]

    def _claim(self, conn, terminals: list[str]) -> None:
        """Lock the terminals this transaction writes for (their rows, in id
        order, so two writers never wait for each other in a circle), and
        bring this writer's picture of each up to date: a terminal whose
        `ingest_rev` moved since this writer last wrote it was written by
        another writer, and its progress is read again from the database.
        Under the lock nobody else can move it until this commits: the
        cumulative ack computed here is exactly what the database holds.
        SQLite: BEGIN IMMEDIATE holds the whole database already."""
        if not terminals:
            return
        rows = conn.execute(f"SELECT id, acked_upto, ingest_rev FROM terminals WHERE id IN ({json_values(conn)}) "
                            f"ORDER BY id{for_update(conn)}", [json.dumps(terminals)]).fetchall()
        for terminal, upto, rev in rows:
            if self._rev.get(terminal) != rev:
                self._progress[terminal] = self._load_terminal(conn, terminal, upto)
                self._rev[terminal] = rev

    def _apply_batch(self, conn, batch: Batch, now: int) -> int | None:
        """Store a batch's records; returns the highest seq it carried."""
        terminal = batch.terminal
        progress = self._progress.setdefault(terminal, Progress())
        if self._next_in_line(progress, batch):
            return batch.entries[-1].seq
        topic = topics.topic(terminal, topics.UP)
        expected = batch.after + 1
        window = progress.upto + SEQ_WINDOW
        for entry in batch.entries:
            seq = entry.seq
            if seq is None:
                self._quarantine(conn, now, topic, terminal, None, False, entry.reason or "schema_invalid",
                                 entry.detail, entry.text.encode())
                continue
            if seq > window:
                # Not stored and not accounted for: stored, it would sit beyond
                # the ack for ever and keep every later batch of the terminal
                # off the next-in-line path.
                detail = f"seq {seq} is more than {SEQ_WINDOW} beyond the acknowledged {progress.upto}"
                if self._quarantine(conn, now, topic, terminal, seq, False, "seq_beyond_window", detail,
                                    entry.text.encode()):
                    self._alert(conn, now, "seq_beyond_window", terminal, seq, None, detail)
                continue
            if seq < expected:
                self._quarantine(conn, now, topic, terminal, seq, False, "batch_not_increasing",
                                 f"seq {seq} after {expected - 1}", entry.text.encode())
                continue
            if seq > expected:
                self._missing(conn, now, terminal, progress, expected, seq - 1)
            expected = seq + 1
            if entry.ok:
                self._store(conn, now, terminal, progress, entry)
            elif self._quarantine(conn, now, topic, terminal, seq, True, entry.reason, entry.detail,
                                  entry.text.encode()):
                self._alert(conn, now, entry.reason, terminal, seq, None, entry.detail)
                progress.account(seq, seq)
        return max((e.seq for e in batch.entries if e.seq is not None), default=None)

    def _next_in_line(self, progress: Progress, batch: Batch) -> bool:
        """The common case, taken whole: every record verified, each the next
        of the terminal's sequence and chained to the one before, nothing
        held out of order. Queued for the bulk insert in one step, as `_store`
        would one by one; anything else goes record by record."""
        entries = batch.entries
        expected = progress.upto + 1
        if not entries or progress.above or batch.after != progress.upto \
                or not (progress.last_seq == progress.upto or expected == 1):
            return False
        before = envelope.GENESIS if expected == 1 else progress.last_digest
        for entry in entries:
            if entry.seq != expected or not entry.ok or entry.prev != before:
                return False
            before = entry.digest
            expected += 1
        terminal = batch.terminal
        self._fresh.extend([(terminal, entry) for entry in entries])
        self.stats.stored += len(entries)
        progress.upto = progress.last_seq = expected - 1
        progress.last_digest = before
        progress.max_seq = max(progress.max_seq, expected - 1)
        return True

    def _store(self, conn, now: int, terminal: str, progress: Progress, entry: Entry) -> None:
        seq = entry.seq
        if seq > progress.upto and not progress.above:
            # Certainly new (every stored seq is accounted for, so <= upto or in
            # `above`): queue it for one bulk insert, check the chain in memory.
            if progress.last_seq == seq - 1 or seq == 1:
                before = envelope.GENESIS if seq == 1 else progress.last_digest
                if before != entry.prev:
                    self._alert(conn, now, "chain_break", terminal, seq, None,
                                f"prev {entry.prev[:12]}… does not match the digest of seq {seq - 1}")
            else:
                self._flush(conn, now)
                self._check_chain(conn, now, terminal, progress, entry)
            self._fresh.append((terminal, entry))
            self.stats.stored += 1
            progress.last_seq, progress.last_digest = seq, entry.digest
            progress.max_seq = max(progress.max_seq, seq)
            progress.account(seq, seq)
            return
        self._flush(conn, now)
        self._order(conn)
        cur = conn.execute(
            "INSERT INTO records(terminal, seq, type, time, digest, prev, record, received) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [terminal, seq, entry.type, entry.time, entry.digest, entry.prev, entry.text, now])
        if cur.rowcount == 0:
            stored = conn.execute("SELECT digest FROM records WHERE terminal=? AND seq=?", [terminal, seq]).fetchone()
            if stored and stored[0] == entry.digest:
                self.stats.duplicates += 1
            elif self._quarantine(conn, now, topics.topic(terminal, topics.UP), terminal, seq, False, "seq_conflict",
                                  "a different record is stored for this seq", entry.text.encode()):
                self._alert(conn, now, "seq_conflict", terminal, seq, None, "a different record is stored for this seq")
            progress.account(seq, seq)
            return
        self.stats.stored += 1
        self._check_chain(conn, now, terminal, progress, entry)
        progress.last_seq, progress.last_digest = seq, entry.digest
        progress.max_seq = max(progress.max_seq, seq)
        progress.account(seq, seq)

    def _flush(self, conn, now: int) -> None:
        """Insert the queued new records, in one go."""
        if not self._fresh:
            return
        fresh, self._fresh = self._fresh, []
        self._order(conn)
        insert_records(conn, [(t, e.seq, e.type, e.time, e.digest, e.prev, e.text, now) for t, e in fresh])

    def _order(self, conn) -> None:
        if not self._ordered:
            order_records(conn)
            self._ordered = True

    def _check_chain(self, conn, now: int, terminal: str, progress: Progress, entry: Entry) -> None:
        seq = entry.seq
        if seq == 1:
            before = envelope.GENESIS
        elif progress.last_seq == seq - 1:
            before = progress.last_digest
        else:
            row = conn.execute("SELECT digest FROM records WHERE terminal=? AND seq=?", [terminal, seq - 1]).fetchone()
            before = row[0] if row else None
        if before is not None and before != entry.prev:
            self._alert(conn, now, "chain_break", terminal, seq, None,
                        f"prev {entry.prev[:12]}… does not match the digest of seq {seq - 1}")
        if progress.max_seq > seq:  # arrived out of order: check the record after it too
            row = conn.execute("SELECT prev FROM records WHERE terminal=? AND seq=?", [terminal, seq + 1]).fetchone()
            if row and row[0] != entry.digest:
                self._alert(conn, now, "chain_break", terminal, seq + 1, None,
                            f"prev of seq {seq + 1} does not match the digest of seq {seq}")

    def _missing(self, conn, now: int, terminal: str, progress: Progress, start: int, end: int) -> None:
        conn.execute("INSERT INTO missing(terminal, seq_from, seq_to, noticed) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT DO NOTHING",
                     [terminal, start, end, now])
        self._alert(conn, now, "ledger_gap", terminal, start, end,
                    f"terminal ledger skips seq {start}" + (f"..{end}" if end > start else ""))
        progress.account(start, end)

    def _quarantine(self, conn, now, topic, terminal, seq, accountable, reason, detail, payload) -> bool:
        """Store a reject, if the terminal's budget has room; returns whether
        it was stored (the caller alerts and accounts only then)."""
        payload = payload[:MAX_QUARANTINE_BYTES]
        if not self._within_budget(conn, now, terminal or "", reason, len(payload)):
            return False
        detail = (detail or "")[:1000].encode("utf-8", "backslashreplace").decode("utf-8")
        conn.execute(
            "INSERT INTO quarantine(received, topic, terminal, seq, accountable, reason, detail, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [now, topic, terminal, seq, int(accountable), reason, detail, payload])
        self.stats.quarantined += 1
        return True

    def _within_budget(self, conn, now: int, terminal: str, reason: str, size: int) -> bool:
        """Charge one reject of `size` bytes to the terminal's hour; past the
        budget, count it per reason and alert once that hour. The hour's
        count is a row in the database, charged by one conditional upsert,
        so every worker spends from the same budget and it rolls back with
        the transaction."""
        hour = now // HOUR_MS
        if self.budget.rows > 0 and size <= self.budget.bytes and conn.execute(
                "INSERT INTO quarantine_spent(terminal, hour, n_rows, n_bytes) VALUES (?, ?, 1, ?) "
                "ON CONFLICT(terminal, hour) DO UPDATE SET n_rows = quarantine_spent.n_rows + 1, "
                "n_bytes = quarantine_spent.n_bytes + excluded.n_bytes "
                "WHERE quarantine_spent.n_rows < ? AND quarantine_spent.n_bytes + excluded.n_bytes <= ? "
                "RETURNING n_rows", [terminal, hour, size, self.budget.rows, self.budget.bytes]).fetchone():
            return True
        conn.execute("INSERT INTO quarantine_dropped(terminal, hour, reason, count, bytes) VALUES (?, ?, ?, 1, ?) "
                     "ON CONFLICT(terminal, hour, reason) "
                     "DO UPDATE SET count = quarantine_dropped.count + 1, bytes = quarantine_dropped.bytes + excluded.bytes",
                     [terminal, hour, reason, size])
        self.stats.dropped += 1
        conn.execute("INSERT INTO quarantine_spent(terminal, hour, n_rows, n_bytes) VALUES (?, ?, 0, 0) "
                     "ON CONFLICT(terminal, hour) DO NOTHING", [terminal, hour])
        first = conn.execute("UPDATE quarantine_spent SET alerted = 1 WHERE terminal = ? AND hour = ? AND alerted = 0 "
                             "RETURNING n_rows, n_bytes", [terminal, hour]).fetchone()
        if first:                     # the fleet's first drop for this terminal this hour
            self._alert(conn, now, "quarantine_budget_exceeded", terminal, None, None,
                        f"{first[0]} rejects, {first[1]} bytes quarantined since "
                        f"{time.strftime('%Y-%m-%d %H:00 UTC', time.gmtime(hour * 3600))}; further rejects this hour "
                        f"are only counted (budget {self.budget.rows} rows, {self.budget.bytes} bytes an hour)")
        return False

    def _alert(self, conn, now, kind, terminal, seq, seq_to, detail) -> None:
        writing_alerts(conn)
        cur = conn.execute(
            "INSERT INTO alerts(time, kind, terminal, seq, seq_to, detail) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            [now, kind, terminal, seq, seq_to, detail])
        if cur.rowcount:
            self.stats.alerts += 1
            log.warning("alert kind=%s terminal=%s seq=%s detail=%s", kind, terminal, seq, detail)

    # -- state from the database

    @staticmethod
    def _load_terminal(conn, terminal: str, upto: int) -> Progress:
        """A terminal's progress as the database has it: what is accounted
        for beyond its ack, and its last stored record for the chain check."""
        progress = Progress(upto=upto)
        for (seq,) in conn.execute("SELECT seq FROM records WHERE terminal=? AND seq>? ORDER BY seq",
                                   [terminal, upto]):
            progress.account(seq, seq)
        for a, b in conn.execute("SELECT seq_from, seq_to FROM missing WHERE terminal=? AND seq_to>?",
                                 [terminal, upto]):
            progress.account(a, b)
        for (seq,) in conn.execute("SELECT seq FROM quarantine WHERE terminal=? AND accountable=1 AND seq>?",
                                   [terminal, upto]):
            progress.account(seq, seq)
        row = conn.execute("SELECT seq, digest FROM records WHERE terminal=? ORDER BY seq DESC LIMIT 1",
                           [terminal]).fetchone()
        if row:
            progress.last_seq, progress.last_digest = row
            progress.max_seq = row[0]
        return progress

    def _recover(self) -> None:
        """After a failed transaction: forget what this writer believed (it
        rolled back), and get a working connection, waiting for the database
        as long as it takes; until then nothing is stored and nothing acked."""
        self._rev.clear()    # every terminal is read again on its next message
        self._progress.clear()
        delay = 0.1
        while True:
            try:
                self.store.reconnect()
                self.store.conn.execute("SELECT 1").fetchone()
                return
            except Exception as err:
                log.warning("database unreachable (%s); retrying in %.1fs", err, delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)


MAX_QUARANTINE_BYTES = 300 * 1024
