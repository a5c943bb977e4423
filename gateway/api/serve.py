"""Serving the supervision API and dashboard: uvicorn, over HTTPS when given a
certificate and key, and behind a reverse proxy whose forwarded headers count
only when they come from a trusted proxy address.

Why the app and not uvicorn decides about proxies: uvicorn trusts
X-Forwarded-For and X-Forwarded-Proto from 127.0.0.1 by default, so any
process on the gateway host could pose as any client address (and escape the
per-address login throttle) or claim HTTPS. Here uvicorn's own handling is
off (`proxy_headers=False`) and `create_app(trusted_proxies=...)` puts
uvicorn's ProxyHeadersMiddleware in front with exactly the addresses given
(`--trusted-proxy`, none by default): from those, X-Forwarded-For sets the
client address and X-Forwarded-Proto the scheme (so cookies get `Secure`,
HSTS is sent and redirects say https://); from anyone else both are ignored.
The same middleware runs under the test client, so tests see what production
does.

TLS: TLS 1.2 or later, and on TLS 1.2 only ECDHE key exchange with AEAD
ciphers (AES-GCM, ChaCha20-Poly1305: what every browser of the last decade
offers; no CBC, no static RSA), set explicitly rather than left to the
platform's defaults; the certificate chain and key from
`--https-cert`/`--https-key`, checked at start so a wrong file fails `gateway
run` at once with its name rather than a thread dying later.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from urllib.parse import urlsplit


TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def tls_context(config, default_factory) -> ssl.SSLContext:
    """uvicorn's context for the certificate, narrowed as above."""
    context = default_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    return context


def check_tls(cert: str | None, key: str | None) -> tuple[str, str] | None:
    """(cert, key) when both are given and load as a pair, None when neither;
    ValueError naming the problem otherwise."""
    if not cert and not key:
        return None
    if not cert or not key:
        raise ValueError("--https-cert and --https-key go together")
    for name, path in (("--https-cert", cert), ("--https-key", key)):
        if not Path(path).is_file():
            raise ValueError(f"{name} {path}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as err:
        raise ValueError(f"--https-cert {cert} / --https-key {key}: not a certificate and its key ({err})") from None
    return str(cert), str(key)


def check_proxies(values) -> list[str]:
    """Trusted proxy addresses or networks (`127.0.0.1`, `10.0.0.0/24`, `::1`)."""
    out = []
    for value in values or ():
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"--trusted-proxy {value!r}: expected an IP address or network") from None
        out.append(value)
    return out


def uvicorn_config(app, host: str, port: int, tls: tuple[str, str] | None = None):
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2,
                          access_log=False, proxy_headers=False, server_header=False,
                          ssl_certfile=tls[0] if tls else None, ssl_keyfile=tls[1] if tls else None,
                          ssl_cert_reqs=ssl.CERT_NONE, ssl_context_factory=tls_context if tls else None)


def check_tiles(template: str | None) -> str | None:
    """The tile server's origin (for the page's image policy), or None; a
    template that is not http(s) with {z}, {x} and {y} is refused at start."""
    if not template:
        return None
    parts = urlsplit(template)
    placeholders = all(k in template for k in ("{z}", "{x}", "{y}"))
    if parts.scheme not in ("http", "https") or not parts.netloc or not placeholders:
        raise ValueError(f"map tiles {template!r}: an http(s) URL template with {{z}}, {{x}} and {{y}}")
    return f"{parts.scheme}://{parts.netloc}"
