"""The ledger on flash: the shop's legal ledger (台账) and the uplink's outbox,
for a board with a few megabytes of flash and no SQLite.

Layout, in one directory:
  ledger.log    append-only, one record a line: the signed, chained envelope
                exactly as the uplink sends it (protocols/envelope.py), so the
                record's MAC and `prev` are the integrity check, and nothing is
                ever rewritten: flash wear is one pass over the log, old blocks
                are never written again.
  ledger.state  small JSON: the acknowledged watermark, a checkpoint
                (seq, byte offset) every CHECKPOINT records above the watermark,
                and the torn tails found. Replaced atomically (written to
                ledger.state.new, flushed, renamed over), so it is always the
                old one or the new one, never half of each.

Commit: a record is written with its newline and flushed (fsync on the unix
port, a littlefs sync on the board) before `append` returns: "approved" is
only printed after that. A power cut at any byte therefore leaves a prefix of
the log that ends in whole records plus, at worst, a torn piece of the record
being written, which nobody was told about. `open` scans from the newest
checkpoint, checks every record's MAC, seq and chain, and when bytes follow the
last good record it marks them: their range goes into ledger.state, a newline
closes them off so the next record starts on a line of its own, and an `event`
record `ledger_torn_tail` names the range, so the gateway hears of it. The torn
record's seq is used again: no one ever saw it.

Full flash: `append` refuses (LedgerFull, `ledger_disk_full`) while free space
is below a reserve, before writing a byte; if the filesystem still runs out
mid-write, the partial line is a torn tail like a power cut's and is marked on
the next `open`. Nothing already written is touched either way.

The watermark moves only by `mark_acked` (the gateway's end-to-end ack), and
only forward, never beyond the head.
"""

import gc
import json
import os

from clock import wall_ms as _wall_ms
from protocols import envelope, reasons

reasons.register({
    "ledger_disk_full": (
        "存储空间已满，暂停销售；请联系维护人员清理或更换存储卡。已记录的台账不受影响。",
        "storage is full: sales are paused until space is freed; existing ledger rows are safe",
    ),
    "ledger_corrupt": ("台账已损坏，暂停销售；请联系维护人员", "the ledger is damaged: sales are paused"),
})

LOG = "ledger.log"
STATE = "ledger.state"
CHECKPOINT = 64            # records between checkpoints: a scan on open reads at most this many
DEFAULT_RESERVE = 8 * 1024  # bytes kept free on flash: the state file and one more record still fit


class LedgerError(reasons.ReasonError):
    pass


class LedgerFull(LedgerError):
    def __init__(self, detail=""):
        super().__init__("ledger_disk_full", detail)


def seq_of(line):
    """The seq of a stored record line, without parsing its JSON: canonical key
    order puts `prev` (64 hex) and `seq` last but four, after the body, whose
    strings cannot end with `,"prev":"`."""
    at = line.rfind(',"prev":"')
    if at < 0:
        raise ValueError("not a record")
    start = at + 9 + 64 + 8     # ,"prev":" + hex + ","seq":
    end = line.find(",", start)
    return int(line[start:end])


class Ledger:
    def __init__(self, directory, terminal, key, reserve=DEFAULT_RESERVE, checkpoint=CHECKPOINT, wall_ms=_wall_ms):
        self.dir = directory
        self.wall_ms = wall_ms
        self.terminal = terminal
        self.key = key
        self.reserve = reserve
        self.checkpoint_every = checkpoint
        self.head = 0
        self.acked = 0
        self.last_digest = envelope.GENESIS
        self.end = 0              # byte offset after the last good record
        self.checkpoints = []     # [[seq, offset of that record]], ascending
        self.torn = []            # [[start, end]] byte ranges of torn tails
        self._log = None

    def _path(self, name):
        return self.dir + "/" + name

    # -- opening and recovery

    def open(self):
        _makedirs(self.dir)
        state = self._read_state()
        self.acked = state.get("acked", 0)
        self.checkpoints = state.get("checkpoints", [])
        self.torn = state.get("torn", [])
        size = _size(self._path(LOG))
        while True:
            while self.checkpoints and self.checkpoints[-1][1] >= size:
                self.checkpoints.pop()   # the log ends before it: cut there by a power cut
            start_seq, start = 0, 0
            if self.checkpoints:
                start_seq, start = self.checkpoints[-1]
                start_seq -= 1
            self._scan(start, start_seq, size)
            if self.last_digest is not None or not self.checkpoints:
                break
            self.checkpoints.pop()       # the checkpoint's own record is the torn one: start further back
        torn = None
        if self.end < size:
            torn = [self.end, size]
            self.torn.append(torn)
        self._log = open(self._path(LOG), "ab")
        if torn is not None:
            self._log.write(b"\n")    # close the torn piece off: the next record starts a line of its own
            self._log.flush()
            self.end = size + 1
            self._write_state()
            self.append("event", {"code": "ledger_torn_tail",
                                  "detail": "%d bytes at offset %d after seq %d" % (torn[1] - torn[0], torn[0], self.head)},
                        self.wall_ms())
        gc.collect()   # the scan's garbage freed before the terminal's long-lived objects are made above it
        return self

    def _scan(self, start, before_seq, size):
        """Check records from byte `start` on; stop at the first bad one. The
        record at a checkpoint was checked when it was written; the chain is
        checked from it on."""
        self.head = before_seq
        self.end = start
        self.last_digest = envelope.GENESIS if before_seq == 0 else None
        self._missing_newline = False
        if start >= size:
            return
        with open(self._path(LOG), "rb") as f:
            f.seek(start)
            offset = start
            while offset < size:
                raw = f.readline()
                nxt = offset + len(raw)
                if self._inside_torn(offset):
                    offset = nxt            # a torn piece marked before: not a record
                    self.end = offset
                    continue
                line = raw.rstrip(b"\n")
                record = self._check(line)
                if record is None:
                    return                   # torn (or never finished): stops the good prefix here
                if not raw.endswith(b"\n"):
                    # A whole record whose newline was cut off: it is complete and
                    # signed, so it stays; the newline is added on the next append.
                    self._missing_newline = True
                self.head = record["seq"]
                self.last_digest = envelope.digest(record)
                self.end = nxt
                offset = nxt
                if self.head % self.checkpoint_every == 1 or self.checkpoint_every == 1:
                    self._add_checkpoint(self.head, nxt - len(raw))

    def _inside_torn(self, offset):
        for start, end in self.torn:
            if start <= offset < end:
                return True
        return False

    def _check(self, line):
        """The record on `line` if it is whole and follows the head; else None."""
        if not line:
            return None
        try:
            record = json.loads(line)
            envelope.verify_record(record, self.key)
        except (ValueError, KeyError, TypeError, envelope.Invalid):
            return None
        if record["terminal"] != self.terminal:
            raise LedgerError("ledger_corrupt", "record of terminal %s" % record["terminal"])
        if self.head and record["seq"] != self.head + 1:
            return None
        if self.last_digest is not None and record["prev"] != self.last_digest:
            return None
        return record

    # -- writing

    _missing_newline = False

    def append(self, rtype, body, time_ms=None):
        """Sign, chain and commit one record; returns its seq once it is on flash."""
        seq = self.head + 1
        if time_ms is None:
            time_ms = self.wall_ms()
        record = envelope.make_record(self.key, self.terminal, seq, self.last_digest, time_ms, rtype, body)
        line = envelope.stored_text(record).encode()
        if self._missing_newline:
            line = b"\n" + line
        if self.free() < len(line) + 1 + self.reserve:
            raise LedgerFull("%d bytes free, %d kept in reserve" % (self.free(), self.reserve))
        try:
            self._log.write(line + b"\n")
            self._log.flush()
        except OSError as err:
            raise LedgerFull(str(err))
        self._missing_newline = False
        start = self.end + (1 if line.startswith(b"\n") else 0)
        self.end += len(line) + 1
        self.head = seq
        self.last_digest = envelope.digest(record)
        if seq % self.checkpoint_every == 1 or self.checkpoint_every == 1:
            self._add_checkpoint(seq, start)
            self._write_state()
        return seq

    def _add_checkpoint(self, seq, offset):
        if not self.checkpoints or self.checkpoints[-1][0] < seq:
            self.checkpoints.append([seq, offset])

    def free(self):
        st = os.statvfs(self.dir)
        return st[0] * st[4]   # f_bsize * f_bavail

    # -- the watermark

    def mark_acked(self, upto):
        """Move the watermark to `upto` (the gateway's cumulative ack); False
        when it would go back or beyond the head."""
        if upto <= self.acked or upto > self.head:
            return False
        self.acked = upto
        self._write_state()
        return True

    @property
    def backlog(self):
        return self.head - self.acked

    # -- reading

    def pending(self, after, limit):
        """Up to `limit` (seq, stored text) with seq > after, in order."""
        offset = 0
        for seq, at in self.checkpoints:
            if seq <= after + 1:
                offset = at
        out = []
        if after >= self.head:
            return out
        with open(self._path(LOG), "rb") as f:
            f.seek(offset)
            pos = offset
            while len(out) < limit and pos < self.end:
                raw = f.readline()
                if not raw:
                    break
                here = pos
                pos += len(raw)
                if self._inside_torn(here):
                    continue
                text = raw.rstrip(b"\n").decode()
                if not text:
                    continue
                seq = seq_of(text)
                if seq > after:
                    out.append((seq, text))
        return out

    def records(self):
        """Every record line, oldest first (exports, tests)."""
        return [text for _, text in self.pending(0, self.head)]

    # -- the state file

    def _read_state(self):
        try:
            with open(self._path(STATE)) as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return {}

    def _write_state(self):
        """Atomically: the new state on a file of its own, flushed, renamed over."""
        keep = [c for c in self.checkpoints if c[0] > self.acked]
        below = [c for c in self.checkpoints if c[0] <= self.acked]
        if below:
            keep.insert(0, below[-1])   # where a re-send from the watermark starts reading
        self.checkpoints = keep
        text = json.dumps({"acked": self.acked, "checkpoints": keep, "torn": self.torn})
        tmp = self._path(STATE + ".new")
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
        os.rename(tmp, self._path(STATE))

    def close(self):
        if self._log is not None:
            self._log.close()
            self._log = None


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return 0


def _makedirs(path):
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        if sub:
            try:
                os.mkdir(sub)
            except OSError:
                pass
