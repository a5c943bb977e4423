"""A real Mosquitto on a free port, owned by the caller so it can be killed and
restarted: the demo, the simulator and the fault tests all use it.

Persistence is on (in the broker's own directory), so a restarted broker still
holds the gateway's queued session, as a production broker would; queues are
unbounded because the terminals' own flow control bounds them.

`Mosquitto.generated` runs the configuration the project generates for
production (`gateway terminal broker-auth`, gateway/enforcement/brokerconf.py: client ids
bound to usernames, the payload limit, and with a PKI the TLS listeners) on
free ports; the plain constructor writes a minimal configuration of its own
for tests that are not about the trust boundary.
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
                 password_file: Path | None = None, acl_file: Path | None = None,
                 config: Path | None = None, tls_port: int | None = None, cert_port: int | None = None,
                 ca: Path | None = None):
        """`config`: run this mosquitto.conf as it is (made for `port`,
        `tls_port`, `cert_port`; `ca` checks the broker over TLS) instead of
        writing one."""
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
        self.config = config
        self.tls_port, self.cert_port, self.ca = tls_port, cert_port, ca
        self._regenerate = None

    @classmethod
    def generated(cls, workdir: str | Path, store, gateway_password: str,
                  pki_dir: str | Path | None = None, workers: int = 1) -> "Mosquitto":
        """A broker on the generated configuration (gateway/enforcement/brokerconf.py) for
        the terminals in `store`, on free loopback ports, persisting and
        logging in `workdir`; TLS listeners when `pki_dir` holds a PKI
        (gateway/enforcement/pki.py); broker users for `workers` gateway workers
        (`gateway run --share-group`). After provisioning more terminals, `regenerate`."""
        from gateway.enforcement import brokerconf

        workdir = Path(workdir)
        listeners = brokerconf.Listeners(free_port(), free_port() if pki_dir else None,
                                         free_port() if pki_dir else None, "127.0.0.1")

        def write(store) -> "brokerconf.BrokerFiles":
            return brokerconf.write(store, workdir / "auth", gateway_password, listeners, pki_dir=pki_dir,
                                    data_dir=workdir, log_file=workdir / "mosquitto.log", run_as=getpass.getuser(),
                                    workers=workers)

        files = write(store)
        broker = cls(workdir, listeners.port, config=files.conf, tls_port=listeners.tls_port,
                     cert_port=listeners.cert_port, ca=files.ca)
        broker._regenerate = write
        return broker

    def regenerate(self, store) -> None:
        """Rewrite the generated files from `store` and have the broker reload them."""
        self._regenerate(store)
        self.reload()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        """MQTT over TLS with a username and password (check the broker with `ca`)."""
        return f"mqtts://127.0.0.1:{self.tls_port}"

    @property
    def cert_url(self) -> str:
        """MQTT over TLS with a client certificate whose CN is the username."""
        return f"mqtts://127.0.0.1:{self.cert_port}"

    def _write_config(self) -> Path:
        if self.config is not None:
            return self.config
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
