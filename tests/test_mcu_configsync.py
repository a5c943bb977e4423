"""Config sync within a small heap: the MAC of a config chunk is computed
over its canonical bytes fed to the hash piece by piece
(protocols.canonical.feed), so a card-only terminal never builds a 20 KB
chunk's canonical text whole (docs/mcu.md "Memory and size")."""

from __future__ import annotations

import hashlib
import hmac
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import canonical, configsync
from tests.support import mcu

KEY = bytes(range(32))

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-canonical.MAX_SAFE_INT, canonical.MAX_SAFE_INT) | _text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_text, inner, max_size=5),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_the_streamed_encoder_feeds_exactly_the_stdlib_bytes(value):
    """MicroPython's streamed encoder (run here on CPython), piece by piece,
    gives the bytes the stdlib's canonical encoder gives whole."""
    pieces = []
    canonical._feed(value, pieces.append)
    assert b"".join(bytes(p) for p in pieces) == json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_the_streamed_encoder_refuses_what_has_no_canonical_form():
    for bad in (1.5, {1: 2}, [canonical.MAX_SAFE_INT + 1], {"a": object()}):
        try:
            canonical._feed(bad, lambda piece: None)
        except canonical.NotCanonical:
            continue
        raise AssertionError(f"{bad!r} was encoded")


def _chunk() -> bytes:
    """The first chunk of a catalogue-like section: 16,000 characters of JSON
    (Chinese names, a quote every few characters) inside one string."""
    text = canonical.dumps({"p": [{"name": "农药%d" % i, "reg": "PD2010%04d" % i, "n": i} for i in range(600)]})
    chunks = configsync.encode_chunks(KEY, "M001", 1, "catalogue", 3, text)
    assert len(chunks) == 2 and len(chunks[0]) > 20_000
    return chunks[0]


def test_the_mac_is_hmac_sha256_over_the_whole_canonical_text():
    message = json.loads(_chunk())
    unsigned = {k: v for k, v in message.items() if k != "mac"}
    whole = hmac.new(KEY, configsync.PREFIX + canonical.encode(unsigned), hashlib.sha256).hexdigest()
    assert configsync._mac(KEY, message) == whole == message["mac"]


DECODE = """
from protocols import configsync
p = open(%r, 'rb').read()
try:
    m = configsync.decode(p, bytes(range(32)))
    print('ok', m['index'], len(m['data']))
except configsync.Invalid as err:
    print('refused', err.code)
"""


def test_micropython_verifies_a_config_chunk_in_a_200K_heap(tmp_path):
    """The real MicroPython unix port (64-bit) with `-X heapsize=200K`:
    configsync loaded from source, a 21 KB chunk read and verified. Building
    the canonical text whole to MAC it needed 250K (measured: 200K fails
    allocating 21 KB); fed to the hash it needs 180K."""
    path = tmp_path / "chunk0.json"
    path.write_bytes(_chunk())
    result = mcu.run(DECODE % str(path), heap="200K")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "0", "16000"]


def test_micropython_refuses_a_chunk_whose_text_was_altered(tmp_path):
    """The streamed MAC is checked, not merely computed: one character of the
    section text changed and the chunk is refused."""
    payload = _chunk()
    altered = payload.replace("农药17".encode(), "农药71".encode(), 1)
    assert altered != payload
    path = tmp_path / "chunk0.json"
    path.write_bytes(altered)
    result = mcu.run(DECODE % str(path), heap="200K")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["refused", "bad_mac"]


@settings(max_examples=200, deadline=None)
@given(_values)
def test_every_canonical_mac_is_the_same_streamed_or_whole(value):
    """envelope.canonical_hmac_hex signs acks, authorization messages and
    config chunks. A card-only terminal takes the streamed branch (no whole
    text in a fragmented heap: the authorization response once ran a 500K
    heap out); CPython the whole one. Both give HMAC over prefix + encode."""
    from protocols import envelope
    message = {"body": value, "mac": "0" * 64}
    whole = hmac.new(KEY, b"auth-resp:" + canonical.encode({"body": value}), hashlib.sha256).hexdigest()
    assert envelope.canonical_hmac_hex(KEY, b"auth-resp:", message) == whole
    fast, canonical.FAST = canonical.FAST, False
    try:
        assert envelope.canonical_hmac_hex(KEY, b"auth-resp:", message) == whole
    finally:
        canonical.FAST = fast
