"""The supervision side of the gateway: the quota ledger and the rules following
stored records, the sweep thread, the fleet status watcher, the upstream feed
and sender (all once in the fleet, under a leader chosen through the
database), and the HTTP server (API + dashboard, uvicorn) in every process.

`python -m gateway run` starts this as a child process (`gateway supervise`),
at a lower CPU priority: it shares nothing with ingest but the database, so
the rules, the dashboard and their queries never take the interpreter or the
CPU away from storing and acknowledging records. When a burst of records
arrives the rules fall behind for a moment and catch up (gateway/ingest/follow.py).
"""

from __future__ import annotations

import logging
import os
import threading

from gateway.store import connect
from gateway.store import leader
from gateway.store.leader import Leadership
from protocols.clock import wall_ms as now_ms

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--http", help="HOST:PORT to serve the supervision API and dashboard on")
    parser.add_argument("--https-cert", help="serve --http over HTTPS with this certificate (chain), PEM")
    parser.add_argument("--https-key", help="the certificate's private key, PEM")
    parser.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDRESS",
                        help="a reverse proxy's address or network whose X-Forwarded-For and X-Forwarded-Proto "
                             "the API honours (repeatable; default: none, the headers are ignored)")
    parser.add_argument("--rules", help="TOML file with rule thresholds (gateway/supervision/rules/config.py)")
    parser.add_argument("--map-tiles", metavar="URL",
                        help="the deployment's own map tile server, an http(s) URL template with {z}, {x} and {y} "
                             "(overrides the rules file's [map] tiles; without either the map is drawn from the "
                             "grid's coordinates alone, with no outside server)")
    parser.add_argument("--photos", help="directory for inspection photos (default: next to --db)")
    parser.add_argument("--sweep-interval", type=float, default=5.0, help="seconds between time-window sweeps")
    parser.add_argument("--upstream", help="provincial platform endpoint (http[s]://...)")
    parser.add_argument("--upstream-key-env", default="GATEWAY_UPSTREAM_KEY",
                        help="environment variable holding the upstream signing key")
    parser.add_argument("--notify", help="TOML file naming the inspectors' chat robot (DingTalk or WeCom webhook): "
                                         "new, escalated and overdue cases are posted there "
                                         "(gateway/supervision/notify.py)")


def child_arguments(args) -> list[str]:
    """The `gateway supervise` arguments that pass `run`'s supervision options
    on, after checking them here so a bad option fails `run` at once."""
    from gateway.supervision.rules import config as rules_config

    from gateway.api import serve

    rules_config.load(args.rules)
    if args.http:
        parse_hostport(args.http)
        if not args.photos:
            from gateway.api.app import default_photos_dir

            default_photos_dir(args.db)   # a database on a server has no folder for them: --photos
    serve.check_tls(args.https_cert, args.https_key)
    serve.check_proxies(args.trusted_proxy)
    serve.check_tiles(args.map_tiles)
    if args.upstream and not os.environ.get(args.upstream_key_env):
        raise ValueError(f"--upstream needs a signing key in ${args.upstream_key_env}")
    if args.notify:
        from gateway.supervision import notify

        notify.load(args.notify)     # NotifyConfigError is a ValueError: `run` refuses at once
    from gateway.enforcement import fleet

    out = ["--db", args.db, "--broker", args.broker, "--client-id", args.client_id,
           "--sweep-interval", str(args.sweep_interval), "--upstream-key-env", args.upstream_key_env,
           "--password-env", args.password_env, "--log-level", args.log_level]
    for name in ("http", "rules", "photos", "upstream", "notify", "ca", "https_cert", "https_key", "map_tiles"):
        value = getattr(args, name)
        if value:
            out += ["--" + name.replace("_", "-"), value]
    for proxy in args.trusted_proxy:
        out += ["--trusted-proxy", proxy]
    if args.username:   # its own broker user: the broker binds the client id to it
        out += ["--username", fleet.supervise_user(args.username)]
    if args.supervise_cert or args.supervise_key:
        out += ["--cert", args.supervise_cert or "", "--key", args.supervise_key or ""]
    return out


def parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--http expects HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class LeaderWork:
    """The work that must run once in the whole fleet: the quota-ledger,
    rules and upstream followers, the sweeps (time-window rules, filing
    violations into cases, escalation), the upstream sender and the fleet
    status watcher. Built afresh each time this process becomes the leader:
    threads do not restart, and a follower must start from the cursor as
    committed, which the previous holder may have moved."""

    def __init__(self, args, cfg: dict, username: str | None, password: str | None, clock):
        from gateway.enforcement import quota
        from gateway.ingest.follow import Follower
        from gateway.supervision.fleet_status import FleetWatcher
        from gateway.supervision.service import Supervision

        self.args = args
        self.conn = None
        self.followers: list = []
        self.supervision = self.sender = self.watcher = self.notifier = None
        try:
            self.conn = connect(args.db)
            self.supervision = Supervision(self.conn, cfg, clock)
            self.followers.append(Follower(args.db, "quota", quota.RecordApplier(quota.ConfigCache()), clock,
                                           poll=0.2))
            self.followers.append(Follower(args.db, "supervision", self.supervision.hook, clock, poll=0.2))
            if args.upstream:
                from gateway.supervision import upstream

                self.followers.append(Follower(args.db, "upstream", upstream.RecordFeed(), clock, poll=0.2))
                self.sender = upstream.Sender(args.db, args.upstream, os.environ[args.upstream_key_env].encode(),
                                              clock)
            if args.notify:
                from gateway.supervision import notify

                self.notifier = notify.Sender(connect(args.db), notify.load(args.notify), clock)
            # only the leader connects it: with one broker user for every
            # `gateway supervise`, two watchers would take each other's session
            self.watcher = FleetWatcher(args.db, args.broker, username, password,
                                        client_id=f"{args.client_id}-fleet", wall_ms=clock,
                                        ca=args.ca, cert=args.cert, key=args.key)
        except BaseException:
            self.stop()   # the connections opened so far: a failed start repeated must not drain the pool
            raise

    def start(self) -> None:
        for follower in self.followers:
            follower.start()
        self.supervision.start(self.args.sweep_interval)
        self.watcher.start()
        if self.sender:
            self.sender.start()
        if self.notifier:
            self.notifier.start()

    def stop(self) -> None:
        """Joins every thread: once this returns, this process writes nothing
        more as the leader (a short overlap with a new holder before that is
        harmless: every unit of work commits with its cursor, under a row
        or advisory lock, see gateway/ingest/follow.py and
        gateway/supervision/rules/engine.py `Sweeper._tx`)."""
        parts = [self.sender and self.sender.stop, self.watcher and self.watcher.stop,
                 self.supervision and self.supervision.stop, self.notifier and self.notifier.stop,
                 self.notifier and self.notifier.conn.close]
        for follower in self.followers:
            parts += [follower.stop, lambda f=follower: f.conn.close()]   # its latest connection
        parts.append(self.conn and self.conn.close)
        for part in filter(None, parts):
            try:   # on a dead database some of these fail: the rest must still stop
                part()
            except Exception:
                log.exception("stopping the leader work")


class Runtime:
    """A `gateway supervise` process: the HTTP server if asked (every process
    serves it: it only reads and takes users' actions, which are
    transactions of their own), and `LeaderWork` while this process holds
    the `supervision` role (gateway/store/leader.py). Several processes on
    one database make one leader and standbys; a standby polls every
    `POLL_S` and takes over when the holder's lock goes (its process died:
    at once; its machine or network: about 6 s), within the 10 s issue 16
    allows."""

    ROLE = leader.SUPERVISION
    POLL_S = 1.0

    def __init__(self, args, username: str | None, password: str | None,
                 clock=now_ms):
        from gateway.supervision.rules import config as rules_config
        from gateway.api import serve

        self.args, self.clock = args, clock
        self.username, self.password = username, password
        self.cfg = rules_config.load(args.rules)
        self.http = parse_hostport(args.http) if args.http else None
        self.tls = serve.check_tls(args.https_cert, args.https_key)
        self.proxies = serve.check_proxies(args.trusted_proxy)
        serve.check_tiles(args.map_tiles)
        if args.upstream and not os.environ.get(args.upstream_key_env):
            raise ValueError(f"--upstream needs a signing key in ${args.upstream_key_env}")
        if args.notify:
            from gateway.supervision import notify

            notify.load(args.notify)   # a bad file fails the command at once, not at the first lead
        connect(args.db).close()   # a database it cannot open fails the command at once
        self.leadership = Leadership(args.db, self.ROLE)
        self.work: LeaderWork | None = None
        self._stop = threading.Event()
        self._leading_thread: threading.Thread | None = None
        self.server = None
        self.thread = None

    def step(self) -> bool:
        """One look at the role: take it and start the work if it is free,
        stop the work if the role was lost. Returns whether this process
        leads."""
        if self.work is None:
            if not self.leadership.try_acquire():
                return False
            log.info("leader: this process now leads role=%s holder=%s; starting the once-only work",
                     self.ROLE, self.leadership.name)
            try:
                work = LeaderWork(self.args, self.cfg, self.username, self.password, self.clock)
            except Exception:
                # the database went while starting: give the role up and try again
                log.exception("leader work failed to start role=%s", self.ROLE)
                self.leadership.release()
                return False
            work.start()
            self.work = work
            return True
        if self.leadership.held():
            return True
        log.warning("leader: lost role=%s holder=%s (its database session ended); stopping the once-only work",
                    self.ROLE, self.leadership.name)
        self.work.stop()
        self.work = None
        return False

    def _lead(self) -> None:
        while True:
            try:
                self.step()
            except Exception:
                log.exception("leadership check failed role=%s", self.ROLE)
            if self._stop.wait(self.POLL_S):
                return

    def start(self) -> None:
        self._leading_thread = threading.Thread(target=self._lead, name="leadership", daemon=True)
        self._leading_thread.start()
        if self.http:
            import uvicorn

            from gateway.api import create_app, serve

            app = create_app(self.args.db, clock=self.clock, rules_cfg=self.cfg, photos_dir=self.args.photos,
                             trusted_proxies=self.proxies, map_tiles=self.args.map_tiles)
            self.server = uvicorn.Server(serve.uvicorn_config(app, self.http[0], self.http[1], self.tls))
            self.thread = threading.Thread(target=self.server.run, name="http", daemon=True)
            self.thread.start()
            log.info("supervision API and dashboard on %s://%s:%d/", "https" if self.tls else "http", *self.http)

    def stop(self) -> None:
        if self.server:
            self.server.should_exit = True
            self.thread.join(timeout=10)
        self._stop.set()
        if self._leading_thread:
            self._leading_thread.join(timeout=30)
        if self.work:
            self.work.stop()
            self.work = None
        self.leadership.release()   # a standby takes over at its next poll, not after a timeout
