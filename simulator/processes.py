"""Gateways and terminal agents as real OS processes, for fault drills: each can
be killed with SIGKILL mid-stream and started again on the same files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from gateway.enforcement import fleet
from gateway.store import Store
from simulator import lifeline

ROOT = Path(__file__).resolve().parents[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class _Child:
    """A process a drill may stop politely or kill outright (SIGKILL)."""

    proc: subprocess.Popen | None = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


class GatewayProcess(_Child):
    def __init__(self, db: Path, broker_url: str, log_path: Path, username: str | None = None,
                 password: str | None = None, extra_args: list[str] | tuple[str, ...] = (),
                 ca: Path | None = None):
        """`ca`: the CA of an mqtts:// broker (`gateway run --ca`)."""
        # a path, or a database URL (postgresql://...) that Path would mangle
        self.db = db if isinstance(db, str) and "://" in db else Path(db)
        self.broker_url, self.log_path = broker_url, Path(log_path)
        self.username, self.password = username, password
        self.ca = ca
        self.extra_args = list(extra_args)  # e.g. ["--http", "127.0.0.1:8080"]
        self.proc: subprocess.Popen | None = None

    def start(self) -> "GatewayProcess":
        env = _env()
        cmd = [sys.executable, "-m", "gateway", "run", "--broker", self.broker_url, "--db", str(self.db),
               *self.extra_args]
        if self.username:
            cmd += ["--username", self.username]
            env["GATEWAY_MQTT_PASSWORD"] = self.password or ""
        if self.ca:
            cmd += ["--ca", str(self.ca)]
        self._log = open(self.log_path, "ab")
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=self._log, cwd=ROOT,
                                     preexec_fn=lifeline.bind)
        return self

    def wait_subscribed(self, timeout: float = 60.0) -> "GatewayProcess":
        """Until this start of the gateway has its subscriptions at the broker
        (gateway/ingest/network.py logs it on SUBACK): before that, on a broker that
        has never seen the gateway's session, terminals' messages are dropped
        and come again only after a hole, out of the order they were sold in."""
        def subscribed():
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited ({self.proc.returncode}); see {self.log_path}")
            with open(self.log_path, "rb") as log:
                log.seek(self._log_start)
                return b"gateway subscribed to the terminals' topics" in log.read()
        wait_for(subscribed, timeout, "the gateway's subscriptions", interval=0.05)
        return self



class TerminalProcess(_Child):
    """`python -m simulator sell`: a real agent whose counter sells by itself.
    Collects the APPROVED lines it prints after each commit (the sales a clerk
    would have seen approved) across restarts of the process."""

    def __init__(self, config: Path, log_path: Path, rate: float, count: int = 0, seed: int = 1):
        self.config, self.log_path = Path(config), Path(log_path)
        self.load = ["--rate", str(rate), "--count", str(count), "--seed", str(seed)]
        self.proc: subprocess.Popen | None = None
        self.approved: list[int] = []
        self.refused: list[str] = []
        self.stopped_head: int | None = None  # set by STOPPED: selling is over
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stopped = threading.Event()

    def start(self, wait: float = 30.0) -> "TerminalProcess":
        self._log = open(self.log_path, "ab")
        self._ready.clear()
        self._stopped.clear()
        self.stopped_head = None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulator", "sell", "--config", str(self.config), *self.load],
            env=_env(), stdout=subprocess.PIPE, stderr=self._log, cwd=ROOT, preexec_fn=lifeline.bind)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        if not self._ready.wait(wait):
            raise TimeoutError(f"terminal agent {self.config} not ready after {wait}s; see {self.log_path}")
        return self

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            parts = line.decode().split()
            with self._lock:
                if parts[:1] == ["APPROVED"]:
                    self.approved.append(int(parts[1]))
                elif parts[:1] == ["REFUSED"]:
                    self.refused.append(parts[1])
                elif parts[:1] == ["READY"]:
                    self._ready.set()
                elif parts[:1] == ["STOPPED"]:
                    self.stopped_head = int(parts[1])
                    self._stopped.set()

    def stop_selling(self, timeout: float = 30.0) -> None:
        """SIGUSR1, then wait until the agent confirms (STOPPED) that its
        counter is closed: every sale it approved has been reported by then,
        and none will follow. The agent keeps uploading its backlog."""
        if not self.selling():
            return
        self.proc.send_signal(signal.SIGUSR1)
        if not self._stopped.wait(timeout):
            raise TimeoutError(f"terminal agent {self.config} did not stop selling in {timeout}s; see {self.log_path}")

    def selling(self) -> bool:
        """True while the process lives and has not confirmed STOPPED."""
        return bool(self.proc) and self.proc.poll() is None and not self._stopped.is_set()

    def approved_count(self) -> int:
        with self._lock:
            return len(self.approved)


def terminal_config_text(creds: fleet.Credentials, broker_url: str, ledger: Path, ack_timeout: float = 3.0,
                         batch: int = 100, shop: str | None = None, ca: Path | None = None,
                         cert: Path | None = None, key: Path | None = None) -> str:
    """The agent's TOML; `ca` (and a client certificate `cert`, `key`) for an
    mqtts:// broker."""
    tls = "".join(f'{name} = "{path}"\n' for name, path in (("ca", ca), ("cert", cert), ("key", key)) if path)
    text = (
        f'[terminal]\nid = "{creds.terminal}"\nkey = "{creds.key_hex}"\nshop = "{shop or creds.terminal}"\n\n'
        f'[ledger]\npath = "{ledger}"\nreserve_mb = 1\n\n'
        f'[broker]\nurl = "{broker_url}"\nusername = "{creds.terminal}"\npassword = "{creds.mqtt_password}"\n{tls}\n'
        f'[uplink]\nbatch = {batch}\nack_timeout_s = {ack_timeout}\n'
    )
    return text


def provision_terminals(db: Path, names: list[str]) -> list[fleet.Credentials]:
    store = Store(db)
    try:
        now = int(time.time() * 1000)
        return [fleet.provision(store, name, f"shop-{name}", now) for name in names]
    finally:
        store.close()
