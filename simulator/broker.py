"""A real Mosquitto on a free port, owned by the caller so it can be killed and
restarted: the demo, the simulator and the fault tests all use it.

Persistence is on (in the broker's own directory), so a restarted broker still
holds the gateway's queued session, as a production broker would; queues are
unbounded because the terminals' own flow control bounds them.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from simulator import lifeline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class Mosquitto:
    def __init__(self, workdir: str | Path, port: int | None = None,
                 password_file: Path | None = None, acl_file: Path | None = None):
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise FileNotFoundError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.binary = binary
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.password_file = password_file
        self.acl_file = acl_file
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        lines = [
            # run as whoever started us: as root, Mosquitto would otherwise switch
            # to the `mosquitto` user, who cannot read our temporary files
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {self.dir}/",
            "autosave_interval 1",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "max_packet_size 1048576",
            # Nagle off: a small publish (an authorization answer, an ack) right
            # after another would otherwise wait for a delayed TCP ACK, ~40 ms
            "set_tcp_nodelay true",
            "log_type error",
            "log_type warning",
            f"log_dest file {self.log_path}",
        ]
        if self.password_file:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
            if self.acl_file:
                lines.append(f"acl_file {self.acl_file}")
        else:
            lines.append("allow_anonymous true")
        conf = self.dir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> "Mosquitto":
        conf = self._write_config()
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=lifeline.bind)
        try:
            wait_port("127.0.0.1", self.port)
        except TimeoutError:
            self.kill()
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise RuntimeError(f"mosquitto did not start: {err}") from None
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload(self) -> None:
        """Re-read password and ACL files (SIGHUP), e.g. after provisioning."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.kill()
