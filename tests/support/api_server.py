"""The supervision API served for real: uvicorn on a free port, configured as
`gateway run --http` configures it (gateway/api/serve.py), in a thread of the
test process, so a test talks real HTTP or HTTPS to it with httpx and may
still patch what runs inside. Clients may come from other loopback addresses
(127.0.0.2 ...) to look like other machines to the login throttle."""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn

from gateway.api import serve
from simulator.broker import free_port


class Served:
    def __init__(self, app, tls: tuple[str, str] | None = None, host: str = "127.0.0.1"):
        self.host, self.port = host, free_port()
        self.scheme = "https" if tls else "http"
        self.server = uvicorn.Server(serve.uvicorn_config(app, host, self.port, tls))
        self.thread = threading.Thread(target=self.server.run, name="api-under-test", daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def __enter__(self) -> "Served":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the API did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def client_from(address: str, base_url: str, **kwargs) -> httpx.Client:
    """An httpx client whose connections leave from `address` (a loopback
    address other than 127.0.0.1 looks like another machine)."""
    transport = httpx.HTTPTransport(local_address=address, verify=kwargs.pop("verify", True))
    return httpx.Client(base_url=base_url, transport=transport, timeout=30, **kwargs)
