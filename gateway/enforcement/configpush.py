"""Config sync, gateway side: push each terminal the sections it lacks.

A terminal reports the versions it runs in its status message; whenever that
differs from what the gateway holds for it (a new catalogue was imported, a
subject in its town changed, balances moved), the missing sections are
published on its `config` topic as chunks (QoS 1), followed by the retained
manifest. The trigger is the status message, which the broker retains and
re-delivers on every gateway (re)connect, plus a periodic sweep over online
terminals for balances and imports made by the CLIs in other processes.

Balances change with every sale in the district, so they are pushed at most
every `balances_every_s` per terminal; a terminal also refreshes one subject's
balances from each online authorization it gets, so the push only needs to
keep up with sales made elsewhere.

The face gallery (`gallery`, gateway/enforcement/faces.py) is the one large section: a
town's enrolled subjects are hundreds of kilobytes to megabytes of base64. Its
text and digest are built once per version and kept for the last few versions
(terminals of one town share one), and a gallery a terminal did not confirm is
sent again only after `GALLERY_RESEND_AFTER_S` (after `RESEND_AFTER_S` when the
terminal's status asks: the status it sends after storing each smaller section
must not restart a gallery still on its way).

A terminal's scope of subjects (the `subjects`, `balances` and `gallery`
sections) is the area its shop serves: the subjects of the shop's town, or of
its village (`registry.area_subjects`), and nobody else. Registry entries carry
names, plots and villages; a buyer from another town reaches the terminal only
in the answer to an authorization that showed the buyer's card (gateway/enforcement/authz.py),
which the terminal keeps for offline use. Before, recent buyers joined the
scope, so a terminal could pull any subject's entry into its next push by
asking about it once.

What a terminal should run is cheap to ask again and again (every status,
every sweep, a thousand terminals): its shop, its scope of subjects and the
versions that follow from them are kept per terminal and read again only when
the generation changes (a section stored, subjects or faces revised) or after
`CONTEXT_TTL_S` (a shop's record changed); balances, which move with every
sale, are looked up each time. A
status that reports new versions is answered at once; a heartbeat repeating
the last ones, and the periodic sweep, look at a terminal at most every
`SWEEP_EVERY_S`, or at once after a change of generation.

Reads use their own SQLite connection (WAL readers never block the writers).

Several gateway workers: a status is answered by whichever worker the broker
hands it to (a shared subscription gives it to one; without one, every worker
answers). That stays so because answering is idempotent: the chunks of one
version are the same bytes wherever they are built, the terminal stores a
section by version and digest and ignores one it already holds, and the
retained manifest is replaced by an identical one. The periodic sweep is not
left to chance: pushed by every worker, each terminal's balances would go out
once per worker every 30 s. It runs only in the holder of the `config-push`
role (`leading`, gateway/enforcement/handler.py), which takes the terminals
online anywhere from the database (`terminals.state`, kept by every worker's
ingest) and the versions they last reported from `terminal_status` (the fleet
watcher's, which sees every status), not just the statuses it received itself.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable

from gateway.enforcement import faces, quota, registry

from gateway import store
from gateway.store import fleet, registry as registry_store
from protocols import authz, configsync, envelope, facegallery
from protocols.clock import wall_ms as now_ms

log = logging.getLogger(__name__)

RESEND_AFTER_S = 15.0   # the same version is not pushed again sooner, unless asked by a status
GALLERY_RESEND_AFTER_S = 60.0
MAX_RESEND_S = 300.0    # each unconfirmed re-send of one version waits twice as long, up to this
GALLERY_CACHE = 8       # gallery versions kept built (one per town being served, roughly)
TEXT_CACHE = 256        # section texts kept built (subjects: one per scope, i.e. per town)
CONTEXT_TTL_S = 30.0    # a terminal's shop and scope are read again at least this often
SWEEP_EVERY_S = 15.0    # each online terminal is looked at this often (balances: every 30 s)


class ConfigPusher:
    def __init__(self, db_path: str | Path, publish: Callable[[str, bytes, bool], None],
                 key_for: Callable[[str], bytes | None], wall_ms: Callable[[], int] = now_ms,
                 interval_s: float = 2.0, balances_every_s: float = 30.0, monotonic=time.monotonic,
                 leading: Callable[[], bool] | None = None):
        """`leading`: whether this worker holds the fleet's sweep (see the
        module's docstring); None, a gateway on its own: it always sweeps the
        terminals whose statuses it received."""
        self.db_path = str(db_path)
        self._leading = leading
        self.publish = publish          # (terminal, payload, retain)
        self.key_for = key_for
        self.wall_ms = wall_ms
        self.interval_s = interval_s
        self.balances_every_s = balances_every_s
        self._monotonic = monotonic
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._reported: dict[str, dict[str, int]] = {}
        self._online: set[str] = set()
        self._sent: dict[tuple[str, str], tuple[int, float, int]] = {}   # -> (version, when, times sent)
        self._texts: dict[tuple[str, int], str] = {}
        self._galleries: dict[int, tuple[str, str]] = {}   # version -> (text, digest), oldest first
        self._contexts: dict[str, tuple[tuple, float, dict, dict]] = {}  # -> (generation, when, versions, context)
        self._swept: dict[str, float] = {}
        self._swept_generation: tuple | None = None
        self._thread: threading.Thread | None = None
        self._conn = None
        self.pushed = 0

    # -- network thread

    def on_status(self, terminal: str, payload: bytes, message: dict | None = None) -> None:
        try:
            message = message or envelope.decode_status(payload)
        except envelope.Invalid:
            return
        if message.get("terminal") != terminal:
            return
        if message["state"] != "online":
            self._queue.put(("offline", terminal, None))
            return
        self._queue.put(("status", terminal, configsync.parse_versions(message.get("versions"))))

    # -- worker

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="configpush", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread:
            self._thread.join(timeout=10)

    def _db(self):
        if self._conn is None:
            self._conn = store.connect(self.db_path)
        return self._conn

    def _drop_db(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _loop(self) -> None:
        next_sweep = self._monotonic() + self.interval_s
        while True:
            try:
                item = self._queue.get(timeout=max(0.05, next_sweep - self._monotonic()))
            except queue.Empty:
                item = ()
            if item is None:
                if self._conn:
                    self._conn.close()
                return
            try:
                if item:
                    self.handle(*item)
                if self._monotonic() >= next_sweep:
                    next_sweep = self._monotonic() + self.interval_s
                    self.sweep()
            except Exception:
                log.exception("config push failed")
                self._drop_db()   # a restarted database left it dead: the next use connects afresh

    def handle(self, kind: str, terminal: str, versions: dict | None) -> int:
        """A terminal's status: push what it lacks; returns how many sections."""
        if kind == "offline":
            self._online.discard(terminal)
            return 0
        if terminal in self._online and versions == self._reported.get(terminal) and not self._awaiting(terminal):
            return self.visit(terminal)   # a heartbeat, everything sent confirmed: nothing new from the terminal
        self._online.add(terminal)
        self._reported[terminal] = versions
        self._swept[terminal] = self._monotonic()
        return self.push(terminal, asked=True)

    # -- what a terminal should run

    def sweep(self) -> int:
        """Push what is due to the online terminals not visited for
        `SWEEP_EVERY_S` (to all of them after a change of generation)."""
        if self._leading is not None:
            if not self._leading():
                return 0
            self._adopt_fleet(self._db())
        generation = self._generation(self._db())
        changed = generation != self._swept_generation
        self._swept_generation = generation
        return sum(self.visit(terminal, force=changed) for terminal in sorted(self._online))

    def _adopt_fleet(self, conn) -> None:
        """The sweep's terminals as the whole fleet sees them: online in the
        database, with the versions their last status reported."""
        online = {terminal: configsync.parse_versions(versions) if versions is not None else None
                  for terminal, versions in fleet.online_versions(conn).items()}
        self._online = set(online)
        for terminal, versions in online.items():
            if versions is not None:
                self._reported[terminal] = versions

    def visit(self, terminal: str, force: bool = False) -> int:
        """Push what is due to a terminal unless it was looked at in the last
        `SWEEP_EVERY_S` (a heartbeat repeating the versions it runs is such a
        visit: a thousand terminals every few seconds must not each cost
        the database a look)."""
        now_s = self._monotonic()
        if not force and now_s - self._swept.get(terminal, -SWEEP_EVERY_S) < SWEEP_EVERY_S:
            return 0
        self._swept[terminal] = now_s
        return self.push(terminal, asked=False)

    def _awaiting(self, terminal: str) -> bool:
        """Whether a version sent to the terminal is not the one it reports."""
        reported = self._reported.get(terminal, {})
        for name in configsync.SECTIONS:
            sent = self._sent.get((terminal, name))
            if sent is not None and sent[0] != reported.get(name):
                return True
        return False

    @staticmethod
    def _generation(conn) -> tuple:
        """Changes whenever a stored section, the subjects or the faces change."""
        return tuple(registry_store.section_versions(conn)), tuple(fleet.scope_revisions(conn))

    def versions(self, conn, terminal: str) -> tuple[dict[str, int], dict]:
        """The versions the gateway holds for a terminal, computed cheaply (no
        section is serialised), and what building the content needs."""
        generation = self._generation(conn)
        now_s = self._monotonic()
        held = self._contexts.get(terminal)
        if held is None or held[0] != generation or now_s - held[1] >= CONTEXT_TTL_S:
            fixed = {name: version for name, version in generation[0]}
            shop = quota.shop_info(conn, fleet.terminal_shop(conn, terminal))
            shop_text = configsync.section_text(shop)
            fixed[configsync.SHOP] = int(configsync.digest(shop_text)[:12], 16)
            fixed[configsync.SUBJECTS] = dict(generation[1]).get("subjects_rev", 0)
            scope = self._scope(conn, terminal)
            fixed[configsync.GALLERY] = faces.gallery_version(conn, scope)
            held = (generation, now_s, fixed, {"shop": shop, "shop_text": shop_text, "scope": scope,
                                               "scope_json": json.dumps(scope)})
            self._contexts[terminal] = held
        out = dict(held[2])
        out[configsync.BALANCES] = fleet.balances_rev(conn, held[3]["scope_json"])
        return out, held[3]

    def content(self, conn, terminal: str, name: str, version: int, context: dict) -> str:
        """The canonical text of one section for a terminal."""
        if name == configsync.SHOP:
            return context["shop_text"]
        if name == configsync.SUBJECTS:
            key = ("subjects", version, tuple(context["scope"]))
            if key not in self._texts:
                entries = quota.terminal_entries(conn, fleet.subject_entries(conn, context["scope"]))
                content = {"subjects": entries}
                if context["shop"].get("town"):
                    content["town"] = context["shop"]["town"]
                self._texts[key] = configsync.section_text(content)
                while len(self._texts) > TEXT_CACHE:   # a town's terminals share one scope, mostly
                    del self._texts[next(iter(self._texts))]
            return self._texts[key]
        if name == configsync.BALANCES:
            return self._balances(conn, terminal, context["scope"], version)
        if name == configsync.GALLERY:
            return self._gallery(conn, context["scope"], version)[0]
        key = (name, version)
        if key not in self._texts:
            text = fleet.section_content(conn, name, version)
            if text is None:
                raise LookupError(f"{name} changed while pushing")
            self._texts[key] = configsync.section_text(json.loads(text))
        return self._texts[key]

    def sections(self, terminal: str) -> dict[str, tuple[int, str]]:
        """{section: (version, canonical text)} the gateway holds for a terminal."""
        conn = self._db()
        with store.snapshot(conn):  # balances and acked_upto agree
            versions, context = self.versions(conn, terminal)
            return {name: (v, self.content(conn, terminal, name, v, context)) for name, v in versions.items()}

    def _gallery(self, conn, scope: list[str], version: int) -> tuple[str, str]:
        """(text, digest) of a gallery version; the version names its content."""
        held = self._galleries.pop(version, None)
        if held is None:
            payload = faces.gallery_payload(conn, scope)
            text = configsync.section_text(facegallery.section(payload))
            held = (text, configsync.digest(text))
            log.info("gallery built version=%d subjects=%d payload_bytes=%d text_chars=%d",
                     version, len(facegallery.parse(payload)[0]["subjects"]), len(payload), len(text))
        self._galleries[version] = held
        while len(self._galleries) > GALLERY_CACHE:
            del self._galleries[next(iter(self._galleries))]
        return held

    def _digest(self, conn, name: str, version: int, text: str, context: dict) -> str:
        if name == configsync.GALLERY:
            return self._gallery(conn, context["scope"], version)[1]
        return configsync.digest(text)

    @staticmethod
    def _scope(conn, terminal: str) -> list[str]:
        """The subjects of the area the terminal's shop serves, and only those:
        not the buyers it asked about (see the module's docstring)."""
        return registry.area_subjects(conn, registry.terminal_area(conn, terminal))

    def _balances(self, conn, terminal: str, subjects: list[str], version: int) -> str:
        params = json.loads(fleet.section_texts(conn, (configsync.PARAMS,))[configsync.PARAMS])
        periods = quota.current_periods(params, authz.local_date(self.wall_ms()))
        used: dict[str, dict] = {}
        for subject, category, period, amount in fleet.balances(conn, subjects):
            if periods.get(category) == period:
                used.setdefault(subject, {}).setdefault(category, {})[period] = amount
        acked = fleet.acked_upto(conn, terminal)
        return configsync.section_text({"rev": version, "acked": acked, "used": used})

    # -- pushing

    def push(self, terminal: str, asked: bool) -> int:
        """Publish the sections whose version differs from the terminal's; returns
        how many. `asked`: triggered by the terminal's own status."""
        key = self.key_for(terminal)
        if key is None:
            return 0
        reported = self._reported.get(terminal, {})
        now_s = self._monotonic()
        conn = self._db()
        with store.snapshot(conn):  # balances and acked_upto agree
            versions, context = self.versions(conn, terminal)
            due = []
            for name in configsync.SECTIONS:
                version = versions.get(name)
                if version is None or reported.get(name) == version:
                    continue
                sent = self._sent.get((terminal, name))
                if name == configsync.GALLERY:
                    # seconds on a slow line: the status a terminal sends after
                    # storing each smaller section must not restart it
                    wait = RESEND_AFTER_S if asked else GALLERY_RESEND_AFTER_S
                else:
                    wait = 1.0 if asked else RESEND_AFTER_S
                # a terminal too busy to confirm must not be buried in copies
                # (a thousand of them at once were, each getting every section
                # four times): every re-send of the same version waits longer
                if sent and sent[0] == version and now_s - sent[1] < min(MAX_RESEND_S, wait * 2 ** (sent[2] - 1)):
                    continue
                if (name == configsync.BALANCES and reported.get(name) is not None and sent
                        and now_s - sent[1] < self.balances_every_s):
                    continue
                due.append((name, version, self.content(conn, terminal, name, version, context)))
            if not due:
                return 0
            manifest = {}
            built = {name: text for name, _, text in due}
            for name, version in versions.items():
                text = built.get(name) or self.content(conn, terminal, name, version, context)
                manifest[name] = {"version": version, "digest": self._digest(conn, name, version, text, context),
                                  "size": len(text)}
        for name, version, text in due:
            for payload in configsync.encode_chunks(key, terminal, self.wall_ms(), name, version, text,
                                                    configsync.send_chunk_chars(len(text))):
                self.publish(terminal, payload, False)
            prev = self._sent.get((terminal, name))
            self._sent[(terminal, name)] = (version, now_s, prev[2] + 1 if prev and prev[0] == version else 1)
            log.info("config pushed terminal=%s section=%s version=%d bytes=%d", terminal, name, version, len(text))
        self.publish(terminal, configsync.encode_manifest(key, terminal, self.wall_ms(), manifest), True)
        self.pushed += len(due)
        return len(due)
