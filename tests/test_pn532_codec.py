"""PN532 frame codec: the manual's frames byte for byte, the shared vectors under
CPython and real MicroPython, and a streaming decoder that survives any byte stream."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from protocols import pn532

VECTORS = Path(pn532.__file__).parent / "vectors" / "pn532.json"


def load_vectors():
    return json.loads(VECTORS.read_text("utf-8"))


def describe(frame):
    if frame.kind == pn532.DATA_KIND:
        return "data:%02X:%s" % (frame.tfi, pn532.hexstr(frame.data))
    return frame.kind


# ------------------------------------------------------------------ the manual's frames

def test_get_firmware_version_command_is_the_manuals_frame():
    assert pn532.command(pn532.GET_FIRMWARE_VERSION) == bytes.fromhex("0000FF02FED4022A00")


def test_ack_nack_and_error_frames_are_the_manuals_bytes():
    assert pn532.ACK == bytes.fromhex("0000FF00FF00")
    assert pn532.NACK == bytes.fromhex("0000FFFF0000")
    assert pn532.ERROR_FRAME == bytes.fromhex("0000FF01FF7F8100")


def test_firmware_answer_decodes_to_pn532_v1_6():
    frames = pn532.decode_all(bytes.fromhex("0000FF06FAD50332010607E800"))
    assert frames == [pn532.Frame(pn532.DATA_KIND, pn532.TFI_PN532, bytes.fromhex("0332010607"))]
    version = pn532.parse_firmware_version(frames[0].data[1:])
    assert (version.ic, version.ver, version.rev, version.support) == (0x32, 1, 6, 7)


@pytest.mark.parametrize("vector", load_vectors()["frames"], ids=lambda v: v["name"])
def test_vector_frames_encode_and_decode_exactly(vector):
    wire = bytes.fromhex(vector["wire"])
    if vector["kind"] == "data":
        data = bytes.fromhex(vector["data"])
        assert pn532.encode(int(vector["tfi"], 16), data, vector.get("extended", False)) == wire
        expected = pn532.Frame(pn532.DATA_KIND, int(vector["tfi"], 16), data, vector.get("extended", False))
    else:
        expected = pn532.Frame(vector["kind"])
        assert expected.encode() == wire
    assert pn532.decode_all(wire) == [expected]


@pytest.mark.parametrize("vector", load_vectors()["streams"], ids=lambda v: v["name"])
def test_vector_streams_decode_to_the_listed_frames(vector):
    assert [describe(f) for f in pn532.decode_all(bytes.fromhex(vector["wire"]))] == vector["frames"]


@pytest.mark.parametrize("vector", load_vectors()["targets"], ids=lambda v: v["answer"])
def test_vector_target_lists_parse(vector):
    targets = pn532.parse_targets_106a(bytes.fromhex(vector["answer"])[1:])
    assert [(t.tg, t.sens_res.hex().upper(), t.sel_res, pn532.hexstr(t.uid), t.kind) for t in targets] == [
        (t["tg"], t["sens_res"], t["sel_res"], t["uid"], t["kind"]) for t in vector["targets"]
    ]


def test_long_data_goes_into_an_extended_frame_and_back():
    data = bytes(range(256)) * 2
    wire = pn532.encode(pn532.TFI_PN532, data)
    assert wire[:5] == b"\x00\x00\xff\xff\xff"
    assert pn532.decode_all(wire) == []  # 513 bytes is more than a PN532 ever sends: noise
    big = pn532.Decoder(max_data=1024)
    assert big.feed(wire) == [pn532.Frame(pn532.DATA_KIND, pn532.TFI_PN532, data, True)]


def test_oversized_frame_is_refused():
    with pytest.raises(ValueError):
        pn532.encode(pn532.TFI_HOST, bytes(0x10000))


def test_decoder_finds_frames_split_at_every_byte():
    wire = pn532.ACK + bytes.fromhex("0000FF06FAD50332010607E800")
    decoder = pn532.Decoder()
    found = []
    for i in range(len(wire)):
        found += decoder.feed(wire[i:i + 1])
    assert [describe(f) for f in found] == ["ack", "data:D5:0332010607"]


def test_status_text_names_the_manuals_error_codes():
    assert pn532.status_text(0x14) == "MIFARE authentication error"
    assert pn532.status_text(0x41) == "target timeout"  # bit 6 (NAD present) is not part of the code


# ------------------------------------------------------------------ property tests

def frames_strategy():
    data_frame = st.builds(
        lambda tfi, data: pn532.Frame(pn532.DATA_KIND, tfi, data),
        st.sampled_from([pn532.TFI_HOST, pn532.TFI_PN532]),
        st.binary(min_size=0, max_size=64),
    )
    fixed = st.sampled_from([pn532.Frame(pn532.ACK_KIND), pn532.Frame(pn532.NACK_KIND), pn532.Frame(pn532.ERROR_KIND)])
    return st.one_of(data_frame, fixed)


def clean_junk():
    """Junk that cannot start a frame: no 00 FF inside, and no 00 FF across a border."""
    return st.binary(max_size=40).filter(
        lambda b: b"\x00\xff" not in b and not b.startswith(b"\xff") and not b.endswith(b"\x00"))


def feed_in_chunks(stream, cuts):
    decoder = pn532.Decoder()
    found = []
    points = sorted(set(c % (len(stream) + 1) for c in cuts)) + [len(stream)]
    start = 0
    for point in points:
        found += decoder.feed(stream[start:point])
        start = point
    return found + decoder.flush()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.lists(st.tuples(clean_junk(), frames_strategy()), max_size=8), clean_junk(),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_every_frame_is_found_between_junk_bytes(parts, tail, cuts):
    stream = b"".join(junk + frame.encode() for junk, frame in parts) + tail
    found = feed_in_chunks(stream, cuts)
    assert found == [frame for _, frame in parts]


def broken(frame_bytes, how):
    """A damaged copy of a frame: truncated, or one byte changed."""
    if how[0] == "cut":
        return frame_bytes[:how[1] % len(frame_bytes)]
    i = how[1] % len(frame_bytes)
    return frame_bytes[:i] + bytes([frame_bytes[i] ^ (how[2] or 1)]) + frame_bytes[i + 1:]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.one_of(st.binary(max_size=24),
                               st.tuples(frames_strategy(), st.sampled_from(["cut", "flip"]),
                                         st.integers(0, 500), st.integers(0, 255))), max_size=3),
            frames_strategy(),
        ),
        max_size=6,
    ),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_frames_behind_noise_and_broken_frames_are_found(parts, cuts):
    """Arbitrary junk, including damaged frames. A valid frame can only be missed if
    junk before it happens to form a complete valid frame that covers its first
    byte (then that is what the decoder reports); otherwise every frame is found."""
    stream = b""
    embedded = []  # (offset, frame)
    for junk_items, frame in parts:
        for item in junk_items:
            stream += item if isinstance(item, bytes) else broken(item[0].encode(), item[1:])
        embedded.append((len(stream), frame))
        stream += frame.encode()
    found = feed_in_chunks(stream, cuts)  # no exception may escape
    note("stream=%s cuts=%s found=%r" % (stream.hex(), cuts, found))
    remaining = list(found)
    for offset, frame in embedded:
        if frame in remaining:
            remaining = remaining[remaining.index(frame) + 1:]
            continue
        assert any(covers(stream, f, offset) for f in found), (
            "frame at %d missed without a forged frame covering it: %r" % (offset, frame))


def covers(stream, frame, offset):
    """Whether a decoded frame's bytes sit in the stream across `offset`."""
    if frame.kind == pn532.CORRUPT_KIND:
        return False
    body = frame.encode()[1:-1]  # from the start code 00 FF, without pre- and postamble
    at = stream.find(body)
    while at >= 0:
        if at <= offset < at + len(body):
            return True
        at = stream.find(body, at + 1)
    return False


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(min_value=0, max_value=10_000), max_size=20))
def test_arbitrary_bytes_never_raise(stream, cuts):
    for frame in feed_in_chunks(stream, cuts):
        assert frame.kind in (pn532.ACK_KIND, pn532.NACK_KIND, pn532.ERROR_KIND, pn532.DATA_KIND, pn532.CORRUPT_KIND)


# ------------------------------------------------------------------ MicroPython

# Runs unchanged under MicroPython and CPython; VECTORS_PATH is set by the caller.
MICROPYTHON_CHECK = r"""
import json
from protocols import pn532
v = json.load(open(VECTORS_PATH))
n = 0
for f in v["frames"]:
    wire = pn532.unhex(f["wire"])
    if f["kind"] == "data":
        data = pn532.unhex(f["data"])
        ext = f.get("extended", False)
        assert pn532.encode(int(f["tfi"], 16), data, ext) == wire, f["name"]
        want = pn532.Frame("data", int(f["tfi"], 16), data, ext)
    else:
        want = pn532.Frame(f["kind"])
        assert want.encode() == wire, f["name"]
    d = pn532.Decoder(max_data=400)
    got = d.feed(wire) + d.flush()
    assert got == [want], (f["name"], got)
    n += 1
for s in v["streams"]:
    wire = pn532.unhex(s["wire"])
    d = pn532.Decoder()
    got = []
    for i in range(len(wire)):
        got += d.feed(wire[i:i + 1])
    got += d.flush()
    names = [g.kind if g.kind != "data" else "data:%02X:%s" % (g.tfi, pn532.hexstr(g.data)) for g in got]
    assert names == s["frames"], (s["name"], names)
    n += 1
for t in v["targets"]:
    ts = pn532.parse_targets_106a(pn532.unhex(t["answer"])[1:])
    assert [pn532.hexstr(x.uid) for x in ts] == [x["uid"] for x in t["targets"]]
    assert [x.kind for x in ts] == [x["kind"] for x in t["targets"]]
    n += 1
print("pn532 vectors ok", n)
"""


def expected_check_output():
    vectors = load_vectors()
    return "pn532 vectors ok %d" % (len(vectors["frames"]) + len(vectors["streams"]) + len(vectors["targets"]))


def test_vectors_pass_under_micropython(micropython):
    result = micropython('VECTORS_PATH = "/lib/protocols/vectors/pn532.json"\n' + MICROPYTHON_CHECK)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected_check_output()


def test_the_same_check_passes_under_cpython(capsys):
    exec(compile(MICROPYTHON_CHECK, "pn532_check", "exec"), {"VECTORS_PATH": str(VECTORS)})
    assert capsys.readouterr().out.strip() == expected_check_output()
