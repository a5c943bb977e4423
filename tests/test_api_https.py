"""The dashboard and API over HTTPS (issue 15, item 8): `gateway run --https-cert
--https-key` serves them with a certificate from `gateway pki`, checked by a
real HTTPS client against the generated CA (cookies `Secure`, HSTS); and
behind the example reverse proxy (deploy/nginx-dashboard.conf), whose
X-Forwarded-For and X-Forwarded-Proto the API believes from the trusted
proxy's address only.

Two proxies run the example. `ConfigProxy` below always: a small
TLS-terminating one that reads the example's `location /` and applies its
`proxy_set_header` lines as nginx does (a header it sets replaces the
client's; an unknown variable fails the test), so a change to the example
that drops or weakens a header fails here. And real nginx, running the
example itself (ports, certificate and backend filled in): `nginx` on PATH
or in /usr/sbin, or $NGINX naming the binary (scripts/test.sh installs
Debian's nginx-light)."""

from __future__ import annotations

import http.client
import http.server
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from gateway.enforcement import pki
from gateway.api import create_app
from gateway.api.throttle import Limits, LoginThrottle
from simulator.broker import Mosquitto, free_port, wait_port
from simulator.processes import GatewayProcess
from tests.support.api_server import Served, client_from
from tests.support.api_world import PASSWORD, T0, build, copy_of

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "nginx-dashboard.conf"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return build(tmp_path_factory.mktemp("https-template"), {"now": T0})


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    """A CA and a server certificate for localhost and 127.0.0.1 made by
    `python -m gateway pki init`, as an operator would."""
    out = tmp_path_factory.mktemp("pki") / "pki"
    done = subprocess.run([sys.executable, "-m", "gateway", "pki", "--out", str(out), "init"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return pki.Pki(out)


def trusting(ca_: pki.Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_.ca_cert))


def login(client: httpx.Client, password: str = PASSWORD, name: str = "d1") -> httpx.Response:
    return client.post("/api/login", json={"name": name, "password": password})


def cookie_attributes(response: httpx.Response) -> set[str]:
    header = response.headers["set-cookie"]
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}


TILES = "https://tiles.example.gov.cn/{z}/{x}/{y}.png"


def test_gateway_run_serves_the_dashboard_over_https_with_the_generated_ca(template, ca, tmp_path):
    db = copy_of(template, tmp_path / "world")
    broker = Mosquitto(tmp_path / "broker").start()
    port = free_port()
    gateway = GatewayProcess(db, broker.url, tmp_path / "gateway.log", extra_args=[
        "--http", f"127.0.0.1:{port}", "--https-cert", str(ca.broker_cert), "--https-key", str(ca.broker_key),
        "--verifiers", "1", "--map-tiles", TILES]).start()
    try:
        wait_port("127.0.0.1", port, timeout=60)
        url = f"https://localhost:{port}"
        with httpx.Client(base_url=url, verify=trusting(ca), timeout=20) as client:
            page = client.get("/")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert page.headers["strict-transport-security"] == "max-age=31536000"
            r = login(client)
            assert r.status_code == 200, r.text
            assert {"secure", "httponly", "samesite"} <= cookie_attributes(r)
            assert "samesite=strict" in r.headers["set-cookie"].lower()
            assert client.get("/api/me").json()["name"] == "d1"          # the cookie came back over TLS
            map_ = client.get("/api/map")                                 # the deployment's own tile server
            assert map_.json()["tiles"] == TILES
            assert "img-src 'self' https://tiles.example.gov.cn" in map_.headers["content-security-policy"]
        with pytest.raises(httpx.ConnectError):                           # a certificate nobody vouched for
            httpx.get(url + "/", timeout=10)
        with pytest.raises(httpx.HTTPError):                              # and no plain HTTP on that port
            httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
    finally:
        gateway.stop()
        broker.kill()
    assert f"supervision API and dashboard on https://127.0.0.1:{port}/" in (tmp_path / "gateway.log").read_text(
        "utf-8", "replace")


@pytest.mark.parametrize("extra, message", [
    (["--https-cert", "CERT"], "--https-cert and --https-key go together"),
    (["--https-key", "KEY"], "--https-cert and --https-key go together"),
    (["--https-cert", "KEY", "--https-key", "KEY"], "not a certificate and its key"),
    (["--https-cert", "CERT", "--https-key", "missing.key"], "missing.key: no such file"),
    (["--trusted-proxy", "proxy.example.cn"], "expected an IP address or network"),
    (["--map-tiles", "javascript:alert(1)//{z}{x}{y}"], "an http(s) URL template with {z}, {x} and {y}"),
])
def test_https_and_proxy_options_are_checked_before_anything_starts(ca, tmp_path, extra, message):
    names = {"CERT": str(ca.broker_cert), "KEY": str(ca.broker_key), "missing.key": str(tmp_path / "missing.key")}
    args = [names.get(a, a) for a in extra]
    for command in ("run", "supervise"):
        done = subprocess.run([sys.executable, "-m", "gateway", command, "--db", str(tmp_path / "gw.db"),
                               "--broker", "mqtt://127.0.0.1:9", "--http", "127.0.0.1:9", *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr, (command, done.returncode, done.stderr[-500:])


# -- behind the reverse proxy

def example_location(text: str) -> tuple[str, list[tuple[str, str]]]:
    """`proxy_pass` and the `proxy_set_header` lines of the TLS server's `location /`."""
    tls_server = text[text.index("listen 443 ssl"):]
    block = tls_server[tls_server.index("location / {"):]
    block = block[:block.index("}")]
    proxy_pass = re.search(r"proxy_pass\s+(\S+);", block).group(1)
    headers = [(m.group(1), m.group(2).strip('"')) for m in re.finditer(r"proxy_set_header\s+(\S+)\s+(\"[^\"]*\"|\S+);",
                                                                         block)]
    return proxy_pass, headers


class ConfigProxy:
    """TLS in front, the example's headers applied, the backend on loopback
    (the example's proxy_pass address with the test's port)."""

    def __init__(self, ca_: pki.Pki, backend_port: int):
        proxy_pass, self.directives = example_location(EXAMPLE.read_text("utf-8"))
        target = re.match(r"http://([\d.]+):\d+$", proxy_pass)
        assert target, proxy_pass
        self.backend = (target.group(1), backend_port)
        self.port = free_port()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                own = {name.lower() for name, _ in proxy.directives}
                headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | own | {"host"}]
                for name, template in proxy.directives:
                    value = proxy.expand(template, self)
                    if value:                      # nginx leaves out a header set to ""
                        headers.append((name, value))
                conn = http.client.HTTPConnection(*proxy.backend, timeout=30, source_address=("127.0.0.1", 0))
                try:
                    conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for k, v in headers:
                        conn.putheader(k, v)
                    conn.putheader("Content-Length", str(len(body)))
                    conn.endheaders(body)
                    answer = conn.getresponse()
                    data = answer.read()
                    self.send_response(answer.status)
                    for k, v in answer.getheaders():
                        if k.lower() not in HOP_BY_HOP | {"content-length"}:
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_POST = do_HEAD = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(ca_.broker_cert), str(ca_.broker_key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def expand(template: str, request) -> str:
        host_header = request.headers.get("Host", "")
        values = {"remote_addr": request.client_address[0], "scheme": "https", "http_host": host_header,
                  "host": host_header.rsplit(":", 1)[0], "request_uri": request.path,
                  "proxy_add_x_forwarded_for": ", ".join(filter(None, [request.headers.get("X-Forwarded-For"),
                                                                       request.client_address[0]]))}

        def one(m):
            assert m.group(1) in values, f"the example uses ${m.group(1)}, which this proxy does not model"
            return values[m.group(1)]
        return re.sub(r"\$(\w+)", one, template)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class Nginx:
    """Real nginx on the example file: its TLS server on a free loopback
    port with the test's certificate, proxying to the test's backend port;
    the port-80 redirect server and the IPv6 listeners left out."""

    def __init__(self, binary: str, ca_: pki.Pki, backend_port: int, workdir: Path):
        self.port, self.dir = free_port(), workdir
        text = EXAMPLE.read_text("utf-8")
        text = text[text.index("server {", text.index("listen 443 ssl") - 40):]   # the TLS server only
        text = re.sub(r"\n\s*listen \[::\]:\d+[^;]*;", "", text)
        for old, new in (("listen 443 ssl;", f"listen 127.0.0.1:{self.port} ssl;"),
                         ("/etc/agri/dashboard/dashboard.crt", str(ca_.broker_cert)),
                         ("/etc/agri/dashboard/dashboard.key", str(ca_.broker_key)),
                         ("proxy_pass http://127.0.0.1:8080;", f"proxy_pass http://127.0.0.1:{backend_port};")):
            assert old in text, old
            text = text.replace(old, new)
        temp = " ".join(f"{kind}_temp_path {workdir}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                             "scgi"))
        conf = workdir / "nginx.conf"
        conf.write_text(f"daemon off; pid {workdir}/nginx.pid; error_log {workdir}/error.log; events {{}}\n"
                        f"http {{ access_log off; {temp}\n{text}\n}}\n", encoding="utf-8")
        self.cmd = [binary, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port("127.0.0.1", self.port, timeout=20)
        except TimeoutError:
            self.proc.kill()
            raise AssertionError((self.dir / "error.log").read_text("utf-8", "replace")) from None
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=20)


@pytest.fixture(params=["example-headers-proxy", "nginx"])
def behind_proxy(request, template, ca, tmp_path):
    """The API on 127.0.0.1 over plain HTTP trusting 127.0.0.1 (where the
    proxy connects from), the proxy on TLS in front."""
    binary = os.environ.get("NGINX") or shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if request.param == "nginx" and not binary:
        pytest.fail("nginx missing: scripts/test.sh installs it (apt-get install nginx-light)")
    db = copy_of(template, tmp_path / "world")
    # refusals counted, not waited for; the throttle's clock stands still, so a
    # back-off never runs out between two requests on a busy machine (each
    # attempt goes through TLS and a proxy): what these tests prove is whose
    # address is counted, and the doubling has its own tests (test_api_login.py)
    app = create_app(db, clock=lambda: T0 + 300_000, photos_dir=tmp_path / "photos", trusted_proxies=["127.0.0.1"],
                     login_throttle=LoginThrottle(Limits(tarpit_s=0), clock=lambda: 1000.0))
    with Served(app) as served:
        proxy = ConfigProxy(ca, served.port) if request.param != "nginx" else Nginx(binary, ca, served.port, tmp_path)
        with proxy:
            yield served, f"https://localhost:{proxy.port}"


def test_the_example_proxy_sets_both_forwarded_headers_and_never_appends():
    _, headers = example_location(EXAMPLE.read_text("utf-8"))
    assert dict(headers)["X-Forwarded-Proto"] == "$scheme" and dict(headers)["X-Forwarded-For"] == "$remote_addr"


def test_behind_the_proxy_cookies_are_secure_and_urls_say_https(behind_proxy, ca):
    served, proxied = behind_proxy
    with client_from("127.0.0.5", proxied, verify=trusting(ca), follow_redirects=False) as client:
        r = login(client)
        assert r.status_code == 200 and "secure" in cookie_attributes(r)
        assert r.headers["strict-transport-security"] == "max-age=31536000"
        moved = client.get("/api/cases/")                 # the router's own redirect builds an absolute URL
        assert moved.status_code in (307, 308) and moved.headers["location"] == proxied + "/api/cases"


def test_forwarded_headers_count_only_from_the_trusted_proxy(behind_proxy, ca):
    """Straight to the API from another address, X-Forwarded-Proto and
    X-Forwarded-For are ignored: no Secure cookie, no HSTS, http:// URLs, and
    a new made-up address on every attempt does not escape the throttle."""
    served, proxied = behind_proxy
    lies = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.1"}
    with client_from("127.0.0.7", served.url, follow_redirects=False) as direct:
        r = direct.post("/api/login", json={"name": "d1", "password": PASSWORD}, headers=lies)
        assert r.status_code == 200 and "secure" not in cookie_attributes(r)
        assert "strict-transport-security" not in r.headers
        moved = direct.get("/api/cases/", headers=lies)
        assert moved.headers["location"].startswith("http://127.0.0.1:")
        codes = [direct.post("/api/login", json={"name": "d1", "password": "wrong-password"},
                             headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(2, 40)]
        assert codes[-5:] == [429] * 5, codes


def test_behind_the_proxy_each_client_address_has_its_own_throttle(behind_proxy, ca):
    """Through the proxy the API counts the address the proxy saw, not the
    proxy's own (which every user shares) nor what the client claims: an
    attacker rotating X-Forwarded-For is throttled, the officer at another
    address logs in."""
    served, proxied = behind_proxy
    with client_from("127.0.0.8", proxied, verify=trusting(ca)) as attacker, \
            client_from("127.0.0.9", proxied, verify=trusting(ca)) as officer:
        codes = [attacker.post("/api/login", json={"name": "d1", "password": "wrong-password"},
                               headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(2, 40)]
        assert codes[:5] == [401] * 5 and codes[-5:] == [429] * 5, codes
        assert login(officer).status_code == 200


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_is_1_2_or_later_with_aead_ciphers_only(template, ca, tmp_path):
    """What a scanner would try: TLS 1.1, and TLS 1.2 with only CBC ciphers,
    are refused; TLS 1.2 with AES-GCM and TLS 1.3 are served."""
    db = copy_of(template, tmp_path / "world")
    app = create_app(db, clock=lambda: T0 + 300_000, photos_dir=tmp_path / "photos")
    with Served(app, tls=(str(ca.broker_cert), str(ca.broker_key))) as served:
        def handshake(version: ssl.TLSVersion, ciphers: str | None = None) -> str:
            context = trusting(ca)
            context.minimum_version = context.maximum_version = version
            if version < ssl.TLSVersion.TLSv1_2:
                context.set_ciphers("ALL:@SECLEVEL=0")   # let the client try, so the server is what refuses
            if ciphers:
                context.set_ciphers(ciphers)
            with httpx.Client(base_url=served.url.replace("127.0.0.1", "localhost"), verify=context) as client:
                try:
                    return str(client.get("/").status_code)
                except httpx.ConnectError:
                    return "refused"

        assert handshake(ssl.TLSVersion.TLSv1_3) == "200"
        assert handshake(ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256") == "200"
        assert handshake(ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA") == "refused"
        assert handshake(ssl.TLSVersion.TLSv1_1) == "refused"
