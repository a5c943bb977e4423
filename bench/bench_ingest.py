"""Gateway ingest against the broker's own limit, measured side by side in one run.

    .venv/bin/python bench/bench_ingest.py [--rounds 3] [--messages N] [--quick] [--ingest-only]
                                           [--tls] [--db postgresql://USER@HOST:PORT/DB] [--workers 1|2]

By default it measures `gateway run` as deployed: the network process, the
ingest pipeline (verifier and writer processes) and the supervision process
(quota ledger, rules) all on this machine, on SQLite. `--ingest-only`
measures an ingest worker (`--no-supervision`). `--db postgresql://...`
names a PostgreSQL server: each measurement gets a database of its own made
there (and dropped after it). `--workers 2` runs two `gateway run
--share-group` workers (the second with --no-supervision) on one database,
sharing the broker's queue; it needs `--db`. With `--tls` each worker
connects as its own broker user (`gateway-wN`, as `gateway terminal
broker-auth --workers` generates them).

What it prints (targets from the record-path issue):
1. the limit, twice: the QoS 1 receive rate of a bare paho subscriber
   draining a queue the same Mosquitto holds for it (nothing else running),
   and of a C subscriber (`mosquitto_sub -q 1`) draining the same kind of
   queue: the broker's real delivery limit here, an order of magnitude above
   what any Python client takes in;
2. the gateway's sustained ingest rate, drained from the same kind of queue,
   with one record per message (target >= 0.7x the limit; on PostgreSQL
   with one worker, issue 16: >= 0.5x) and with batches of 100 records
   (target >= 3x the limit, in records/s);
3. end-to-end latency from terminal commit to the gateway's ack (which follows
   its commit) at a steady 500 records/s from 50 real terminal agents
   (target p99 < 250 ms; on PostgreSQL, issue 16: < 50 ms);
4. the backlog drain rate: terminals sold while the gateway was down, then it
   starts and everything is acknowledged.

Each rate is taken over the middle of its drain, from 10 % of the queue done
to 90 %, so process start-up is not counted; the bare subscriber and the
gateway each run in their own process, as they would in production.

`--tls` measures everything over MQTT over TLS on the broker configuration
the project generates (`gateway terminal broker-auth --pki`: passwords, ACLs,
client ids bound to usernames, a CA made for the run): the bare subscriber
connects over TLS as the gateway's user too, so the ratios compare like with
like, and every publisher connects as the terminal it publishes for.

Rates on a shared two-core machine move by a third from one minute to the
next, the limit as much as the gateway. So 1 and 2 are measured in rounds
(`--rounds`, 3 by default), each round the limit and then the gateway back to
back; every round's figures are printed, and the ratios checked against the
targets are the medians of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from gateway.enforcement import fleet as gateway_fleet  # noqa: E402
from gateway.enforcement import pki as gateway_pki  # noqa: E402
from gateway.store import KEY_FILE_ENV, MASTER_KEY_ENV, Store, close_pools, is_postgres  # noqa: E402
from protocols import envelope, topics, transport  # noqa: E402
from simulator import postgres  # noqa: E402
from simulator.broker import Mosquitto  # noqa: E402
from simulator.fleet import Fleet  # noqa: E402
from simulator.processes import GatewayProcess, provision_terminals  # noqa: E402
from simulator.run_cli import percentile  # noqa: E402

console = Console()
TERMINALS = 20
GATEWAY_PASSWORD = "bench-gateway-password"


class Target:
    """How every client of the run reaches the broker: plain and anonymous, or
    (--tls) over TLS with `ca` and each user's password."""
    tls: bool = False
    ca: str | None = None
    passwords: dict[str, str] = {}

    @classmethod
    def url(cls, port: int) -> str:
        return f"{'mqtts' if cls.tls else 'mqtt'}://127.0.0.1:{port}"


def _client(client_id: str, clean: bool, user: str = gateway_fleet.GATEWAY_USER) -> mqtt.Client:
    """A client as `user` (with --tls the broker makes its client id the user)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean, protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    if Target.tls:
        c.username_pw_set(user, Target.passwords[user])
        c.tls_set_context(transport.tls_context(Target.ca))
    return c


SHARE_GROUP = "bench"


def worker_id(n: int) -> str:
    """Worker n's client id (and with --tls its user)."""
    return gateway_fleet.worker_user(n)


def make_session(port: int, client_id: str, shared: bool = False, user: str = gateway_fleet.GATEWAY_USER) -> None:
    """Create a persistent session subscribed to the uplink, then leave, so the
    broker queues everything published next for that client id (with --tls:
    for `user`, whose client id it is). `shared`: as a member of the workers'
    shared subscription, as `gateway run --share-group` subscribes."""
    c = _client(client_id, clean=False, user=user)
    subscribed = threading.Event()
    c.on_subscribe = lambda *a: subscribed.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.subscribe([(f"$share/{SHARE_GROUP}/{t}" if shared else t, 1) for t in topics.GATEWAY_SUBSCRIBES])
    subscribed.wait(10)
    c.disconnect()
    c.loop_stop()


def drop_session(port: int, client_id: str, user: str = gateway_fleet.GATEWAY_USER) -> None:
    """End a persistent session. Left behind, it goes on queueing every later
    message, and the broker (persistence on, saved every second) writes that
    growing queue to disk each second: stalls of a quarter of a second in
    whatever is measured after it."""
    c = _client(client_id, clean=True, user=user)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    connected.wait(10)
    c.disconnect()
    c.loop_stop()


def publish_all(port: int, messages: list[tuple[str, bytes]], progress, label: str) -> None:
    """Queue `messages` at the broker; with --tls each terminal's from its own
    connection, as its own user (the ACL lets no one else write its topics)."""
    clients: dict[str, mqtt.Client] = {}

    def client_for(topic: str) -> mqtt.Client:
        user = topics.parse(topic)[0] if Target.tls else ""
        if user not in clients:
            c = clients[user] = _client(f"bench-pub-{os.getpid()}-{user}", clean=True, user=user)
            c.connect("127.0.0.1", port)
            c.loop_start()
        return clients[user]

    task = progress.add_task(label, total=len(messages))
    infos = []
    for i, (topic, payload) in enumerate(messages):
        infos.append(client_for(topic).publish(topic, payload, qos=1))
        if i % 500 == 499:
            infos[-500].wait_for_publish(30)
            progress.update(task, completed=i + 1)
    for info in infos:
        info.wait_for_publish(30)
    progress.update(task, completed=len(messages))
    for c in clients.values():
        c.disconnect()
        c.loop_stop()


def signed_messages(creds: list, records_per_message: int, total_records: int) -> list[tuple[str, bytes]]:
    per_terminal = total_records // len(creds)
    messages = []
    chains = []
    for c in creds:
        key, prev, texts = bytes.fromhex(c.key_hex), envelope.GENESIS, []
        for seq in range(1, per_terminal + 1):
            body = {"subject": f"S{seq % 5000:05d}", "items": [{"product": "PD20080001", "packs": 1 + seq % 3,
                    "amount": 500, "unit": "g"}], "identity": "card", "mode": "online", "clerk": "clerk1",
                    "sale_id": f"{c.terminal}-{seq}"}
            record = envelope.make_record(key, c.terminal, seq, prev, 1764300000000 + seq, "sale", body)
            prev = envelope.digest(record)
            texts.append(envelope.stored_text(record))
        chains.append((c.terminal, texts))
    # interleave terminals, as many shops publish at once
    cursors = [0] * len(chains)
    while True:
        progressed = False
        for i, (terminal, texts) in enumerate(chains):
            start = cursors[i]
            if start >= len(texts):
                continue
            chunk = texts[start:start + records_per_message]
            messages.append((topics.topic(terminal, topics.UP), envelope.encode_batch(terminal, start, chunk)))
            cursors[i] += len(chunk)
            progressed = True
        if not progressed:
            return messages


# ---------------------------------------------------------------- roles (subprocesses)

def steady_rate(marks: list[tuple[float, int]], expected: int) -> float:
    """Items per second between the moments 10 % and 90 % of `expected` were
    done (marks: time, count so far). Start-up and the last stragglers are
    left out on both sides alike: the gateway's first ack comes only after
    its pipeline has started and committed once, by when the network has
    already taken in a share of the queue, which counted from the first ack
    would look faster than it is."""
    def first_at(count: int) -> tuple[float, int] | None:
        return next(((t, n) for t, n in marks if n >= count), None)

    start, end = first_at(expected // 10), first_at(expected * 9 // 10)
    if start is None or end is None or end[0] <= start[0]:
        return 0.0
    return (end[1] - start[1]) / (end[0] - start[0])


def role_bare(port: int, expected: int) -> None:
    """Count messages; print the steady rate. Its socket is set up as the
    gateway's is (TCP_NODELAY), so the two differ only in what they do with
    each message."""
    times = []
    done = threading.Event()

    def on_message(client, userdata, message):
        times.append(time.perf_counter())
        if len(times) >= expected:
            done.set()

    c = _client("bare", clean=False)
    c.on_message = on_message
    c.on_connect = lambda client, *a: transport.no_delay(client)
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(300)
    c.loop_stop()
    rate = steady_rate([(t, i + 1) for i, t in enumerate(times)], expected)
    print(json.dumps({"messages": len(times), "rate": rate}))


def c_subscriber_rate(port: int, client_id: str, expected: int) -> dict:
    """Drain the queue held for `client_id` with `mosquitto_sub -q 1`, printing
    one short line a message (the payload's length) that is counted as it
    arrives, so the rate is taken over the middle of the drain as the bare
    subscriber's is."""
    binary = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
    command = [binary, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-c", "-i", client_id,
               "-C", str(expected), "-F", "%l", "-W", "300"]
    for t in topics.GATEWAY_SUBSCRIBES:
        command += ["-t", t]
    if Target.tls:
        user = gateway_fleet.GATEWAY_USER
        command += ["--cafile", Target.ca, "-u", user, "-P", Target.passwords[user]]
    marks: list[tuple[float, int]] = []
    count = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        while chunk := proc.stdout.read1(1 << 16):
            count += chunk.count(b"\n")
            marks.append((time.perf_counter(), count))
        err = proc.stderr.read().decode(errors="replace")
    if count < expected:
        raise RuntimeError(f"mosquitto_sub took {count} of {expected} messages: {err.strip()}")
    return {"messages": count, "rate": steady_rate(marks, expected)}


def measure_gateway(db, log: Path, port: int, expected_records: int, keys: dict[str, bytes], timeout: float = 300,
                    extra_args: tuple[str, ...] = (), workers: int = 1) -> dict:
    """Start the gateway process and watch its acks: an ack for `upto` N means
    every record up to N of that terminal is committed. Watching acks rather
    than querying the database keeps the observer off the gateway's disk."""
    acked: dict[str, int] = {}
    marks: list[tuple[float, int]] = []
    done = threading.Event()
    lock = threading.Lock()

    def on_message(client, userdata, message):
        if message.retain:  # an earlier run's last ack, kept by the broker: not this run's work
            return
        terminal = topics.parse(message.topic)[0]
        terminal, upto, _ = envelope.decode_ack(message.payload, keys[terminal])
        with lock:
            if upto > acked.get(terminal, 0):
                acked[terminal] = upto
                total = sum(acked.values())
                marks.append((time.perf_counter(), total))
                if total >= expected_records:
                    done.set()

    # with --tls only a terminal may read its acks: one observer a terminal, as that terminal
    observers = []
    for terminal in (keys if Target.tls else [""]):
        observer = _client(f"bench-observer-{os.getpid()}-{terminal}", clean=True, user=terminal)
        observer.on_message = on_message
        observer.connect("127.0.0.1", port)
        observer.loop_start()
        observer.subscribe(topics.topic(terminal, topics.ACK) if terminal else topics.ROOT + "/+/" + topics.ACK, 1)
        observers.append(observer)
    time.sleep(0.5)
    gateways = start_gateways(db, port, log, extra_args, workers)
    try:
        done.wait(timeout)
    finally:
        for gateway in gateways:
            gateway.stop()
        for observer in observers:
            observer.disconnect()
            observer.loop_stop()
    with lock:
        return {"records": sum(acked.values()), "rate": steady_rate(marks, expected_records)}


def start_gateways(db, port: int, log: Path, extra_args: tuple[str, ...], workers: int) -> list[GatewayProcess]:
    """The gateway, or `workers` of them sharing the queue (the first one
    supervising unless --ingest-only, the others ingest only)."""
    out = []
    for n in range(1, workers + 1):
        extra = tuple(extra_args)
        if workers > 1:
            extra += ("--share-group", SHARE_GROUP, "--client-id", worker_id(n))
            if n > 1 and "--no-supervision" not in extra:
                extra += ("--no-supervision",)
        path = log if n == 1 else log.with_name(f"{log.stem}-w{n}{log.suffix}")
        if Target.tls:
            out.append(GatewayProcess(db, Target.url(port), path, username=worker_id(n), password=GATEWAY_PASSWORD,
                                      extra_args=extra, ca=Path(Target.ca)).start())
        else:
            out.append(GatewayProcess(db, Target.url(port), path, extra_args=extra).start())
    return out


class Databases:
    """Where each measurement's gateway database is made: a SQLite file in the
    work directory, or (--db) a database of its own on a PostgreSQL server,
    with the same terminals and keys; dropped after the measurement."""

    def __init__(self, work: Path, server: str | None):
        self.work, self.server = work, server
        self.made: list = []

    def fresh(self, name: str, creds: list):
        if self.server is None:
            db = self.work / f"{name}.db"
        else:
            dbname = f"bench_{os.getpid()}_{name}"
            db = postgres.create_database(self.server, dbname)
        store = Store(db)
        try:
            for c in creds:
                gateway_fleet.provision(store, c.terminal, f"shop-{c.terminal}", 0, c.key_hex, c.mqtt_password)
        finally:
            store.close()
        self.made.append(db)
        return db

    def drop(self, db) -> None:
        if self.server is None:
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
        else:
            close_pools()
            postgres.drop_database(self.server, db.rsplit("/", 1)[1])
        self.made.remove(db)

    def drop_all(self) -> None:
        for db in list(self.made):
            self.drop(db)


def measure_rates(work: Path, port: int, dbs: Databases, creds: list, singles: list, batches: list,
                  batched_records: int, keys: dict[str, bytes], extra: tuple, workers: int, progress,
                  label: str) -> dict:
    """One round: the bare subscriber's rate (the limit), then the gateway's
    with one record per message and with batches, each from a queue the
    same broker holds, back to back."""
    out = {}
    make_session(port, "bare")
    publish_all(port, singles, progress, label + "queueing for bare subscriber")
    tls = ["--tls-ca", Target.ca] if Target.tls else []
    proc = subprocess.run([sys.executable, __file__, "--role", "bare", "--port", str(port),
                           "--expected", str(len(singles)), *tls], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "BENCH_GATEWAY_PASSWORD": GATEWAY_PASSWORD})
    out["bare"] = json.loads(proc.stdout.strip().splitlines()[-1])
    drop_session(port, "bare")
    make_session(port, "csub")
    publish_all(port, singles, progress, label + "queueing for mosquitto_sub")
    out["c"] = c_subscriber_rate(port, "csub", len(singles))
    drop_session(port, "csub")

    for kind, messages, expected in (("single", singles, len(singles)), ("batched", batches, batched_records)):
        db = dbs.fresh(kind, creds)
        for n in range(1, workers + 1):
            make_session(port, worker_id(n), shared=workers > 1, user=worker_id(n))
        publish_all(port, messages, progress, label + f"queueing {kind} messages")
        out[kind] = measure_gateway(db, work / f"{kind}.log", port, expected, keys, extra_args=extra,
                                    workers=workers)
        for n in range(1, workers + 1):
            drop_session(port, worker_id(n), user=worker_id(n))  # or the next queue would be held for it twice over
        dbs.drop(db)
    limit, c_limit = out["bare"]["rate"], out["c"]["rate"]
    out["ratios"] = {"single": out["single"]["rate"] / limit, "batched": out["batched"]["rate"] / limit}
    out["c_ratios"] = {"single": out["single"]["rate"] / c_limit, "batched": out["batched"]["rate"] / c_limit}
    return out


# ---------------------------------------------------------------- the run

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=40000, help="one-record messages for the rate tests")
    parser.add_argument("--batched-records", type=int, default=200000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--backlog", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the three rate measurements; the ratios reported are the medians")
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    parser.add_argument("--ingest-only", action="store_true",
                        help="measure `gateway run --no-supervision` (an ingest worker) instead of the full gateway")
    parser.add_argument("--db", help="a PostgreSQL server, postgresql://USER@HOST:PORT/DB: each measurement "
                                     "makes (and drops) a database of its own there (default: SQLite files)")
    parser.add_argument("--workers", type=int, choices=(1, 2), default=1,
                        help="gateway workers sharing the queue (`gateway run --share-group`; 2 needs --db)")
    parser.add_argument("--verifiers", type=int, help="the gateway's --verifiers (default: the gateway's own)")
    parser.add_argument("--tls", action="store_true",
                        help="everything over MQTT over TLS on the generated broker configuration")
    parser.add_argument("--tls-ca", help=argparse.SUPPRESS)
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "bare":
        if args.tls_ca:
            Target.tls, Target.ca = True, args.tls_ca
            Target.passwords = {gateway_fleet.GATEWAY_USER: os.environ["BENCH_GATEWAY_PASSWORD"]}
        role_bare(args.port, args.expected)
        return 0
    if args.workers > 1 and not args.db:
        parser.error("--workers 2 needs --db postgresql://...: workers share one database on a server")
    if args.db and not is_postgres(args.db):
        parser.error(f"--db {args.db!r}: a PostgreSQL server, postgresql://USER@HOST:PORT/DB")
    if args.quick:
        args.messages, args.batched_records, args.latency_seconds, args.backlog, args.rounds = 4000, 20000, 5.0, 2000, 1

    extra = (("--verifiers", str(args.verifiers)) if args.verifiers is not None else ()) \
        + (("--no-supervision",) if args.ingest_only else ())
    if args.db and not (os.environ.get(MASTER_KEY_ENV) or os.environ.get(KEY_FILE_ENV)):
        os.environ[MASTER_KEY_ENV] = secrets.token_hex(32)  # the gateways inherit it
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    dbs = Databases(work, args.db)
    results: dict = {"tls": args.tls, "db": "postgresql" if args.db else "sqlite", "workers": args.workers}
    rounds: list[dict] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    template = work / "template.db"
    creds = provision_terminals(template, [f"B{i:03d}" for i in range(TERMINALS)])
    keys = {c.terminal: bytes.fromhex(c.key_hex) for c in creds}
    lat_creds = provision_terminals(work / "live-template.db", [f"L{i:03d}" for i in range(50)])
    lat_db = dbs.fresh("live", lat_creds)
    if args.tls:
        ca = gateway_pki.Pki(work / "pki")
        ca.init()
        store = Store(template)
        try:
            for c in lat_creds:   # the latency phase's terminals may connect too
                gateway_fleet.provision(store, c.terminal, None, 0, c.key_hex, c.mqtt_password)
            broker = Mosquitto.generated(work / "broker", store, GATEWAY_PASSWORD, pki_dir=ca.dir,
                                         workers=args.workers)
        finally:
            store.close()
        Target.tls, Target.ca = True, str(broker.ca)
        Target.passwords = {c.terminal: c.mqtt_password for c in creds + lat_creds}
        Target.passwords.update({user: GATEWAY_PASSWORD for user in gateway_fleet.gateway_users(args.workers)})
        port = broker.tls_port
    else:
        broker = Mosquitto(work / "broker")
        port = broker.port
    broker.start()
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("signing records", total=2)
            singles = signed_messages(creds, 1, args.messages)
            progress.advance(task)
            batches = signed_messages(creds, 100, args.batched_records)
            progress.advance(task)

            for round_no in range(1, args.rounds + 1):
                rounds.append(measure_rates(work, port, dbs, creds, singles, batches,
                                            TERMINALS * (args.batched_records // TERMINALS), keys, extra,
                                            args.workers, progress, f"round {round_no}/{args.rounds}: "))
        # 3. latency at a steady load, and 4. backlog drain
        gateways = start_gateways(lat_db, port, work / "live.log", extra, args.workers)
        fleet = Fleet(work / "fleet", Target.url(port), lat_creds, ca=Path(Target.ca) if Target.tls else None)
        fleet.start()
        try:
            time.sleep(1.0)
            with Progress(*columns, console=console) as progress:
                total = int(500 * args.latency_seconds)
                task = progress.add_task("steady 500 records/s", total=total)
                fleet.latencies_ms.clear()
                fleet.run_steady(500, args.latency_seconds, lambda n: progress.advance(task, n))
                fleet.wait_acked(60)
                lat = list(fleet.latencies_ms)
                results["latency_ms"] = {"p50": percentile(lat, 50), "p99": percentile(lat, 99),
                                         "max": max(lat), "samples": len(lat)}

                for gateway in gateways:
                    gateway.kill()
                per_terminal = args.backlog // len(fleet.agents)
                task = progress.add_task("selling with the gateway down", total=per_terminal * len(fleet.agents))
                fleet.fill(per_terminal, lambda n: progress.advance(task, n))
                backlog = fleet.backlog()
                task = progress.add_task("draining backlog", total=backlog)
                t0 = time.perf_counter()
                for gateway in gateways:
                    gateway.start()
                drained = fleet.wait_acked(600, lambda left: progress.update(task, completed=backlog - left))
                elapsed = time.perf_counter() - t0
                results["drain"] = {"backlog": backlog, "seconds": elapsed, "rate": backlog / elapsed,
                                    "complete": drained}
        finally:
            fleet.stop()
            for gateway in gateways:
                gateway.stop()
    finally:
        broker.kill()
        dbs.drop_all()

    results["rounds"] = rounds
    results["ratios"] = {kind: statistics.median(r["ratios"][kind] for r in rounds) for kind in ("single", "batched")}
    results["c_ratios"] = {kind: statistics.median(r["c_ratios"][kind] for r in rounds)
                           for kind in ("single", "batched")}
    over = "MQTT over TLS, generated broker configuration" if args.tls else "plain MQTT"
    over += f", {results['db']}, {args.workers} worker{'s' if args.workers > 1 else ''}"
    rates = Table(title=f"gateway ingest vs. the broker's limit, {len(rounds)} rounds on one broker ({over})",
                  caption="limits: a bare paho subscriber's and mosquitto_sub's QoS 1 receive rates; then the "
                          "gateway with 1 record a message and with 100; ratios to paho's limit, and (C) to "
                          "mosquitto_sub's")
    for column, justify in (("round", "left"), ("paho limit", "right"), ("C limit", "right"), ("1/msg", "right"),
                            ("ratio", "right"), ("(C)", "right"), ("100/msg", "right"), ("ratio", "right"),
                            ("(C)", "right")):
        rates.add_column(column, justify=justify)
    for i, r in enumerate(rounds, 1):
        rates.add_row(str(i), f"{r['bare']['rate']:,.0f} msg/s", f"{r['c']['rate']:,.0f} msg/s",
                      f"{r['single']['rate']:,.0f} rec/s", f"{r['ratios']['single']:.2f}",
                      f"{r['c_ratios']['single']:.2f}", f"{r['batched']['rate']:,.0f} rec/s",
                      f"{r['ratios']['batched']:.2f}", f"{r['c_ratios']['batched']:.2f}")
    single, batched = results["ratios"]["single"], results["ratios"]["batched"]
    # targets: the record-path issue's on SQLite; issue 16's for PostgreSQL (one worker)
    single_target, p99_target = (0.5, 50.0) if args.db else (0.7, 250.0)
    rates.add_row("median", "", "", "", f"{single:.2f} (≥ {single_target} {'✓' if single >= single_target else '✗'})",
                  f"{results['c_ratios']['single']:.3f}", "", f"{batched:.2f} (≥ 3 {'✓' if batched >= 3 else '✗'})",
                  f"{results['c_ratios']['batched']:.2f}")
    Console(width=max(console.width, 120)).print(rates)   # nine columns: too wide for 80
    table = Table(title="latency and backlog (50 real terminal agents)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target")
    lat = results["latency_ms"]
    table.add_row("commit → gateway ack p50 @500 rec/s", f"{lat['p50']:.1f} ms", "")
    table.add_row("commit → gateway ack p99 @500 rec/s", f"{lat['p99']:.1f} ms",
                  f"< {p99_target:.0f} ms " + ("✓" if lat["p99"] < p99_target else "✗"))
    drain = results["drain"]
    table.add_row(f"backlog drain ({drain['backlog']:,} records, 50 terminals)", f"{drain['rate']:,.0f} rec/s",
                  "complete ✓" if drain["complete"] else "incomplete ✗")
    console.print(table)
    console.print_json(json.dumps(results))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
