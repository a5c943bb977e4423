"""The shop's face gallery as the gateway distributes it: the payload format
(docs/face.md "Gallery file") and the `gallery` config sync section that carries
it (docs/protocol.md "Configuration sync").

The gateway builds one payload per shop from the encodings it holds (the
shop's town's subjects plus the terminal's recent buyers, the `subjects`
selection) and the terminal seals that same payload under its device key
(firmware/face/gallery.py). Both meet here, on the format, never on each
other's code.

    payload = header length u32 LE | header JSON, UTF-8, space-padded so the
              encodings start 16-byte aligned | encodings float32 LE, rows x 128
    header  = {"model", "dim", "subjects": [...], "counts": [...], "created"}

Rows are grouped by subject in `subjects` order, `counts[i]` rows each.

The section content is the payload in base64, the most compact text the
chunked JSON channel can carry (4/3 of the float32 bytes; decimal floats would
take about 2.5x and lose exactness), with a summary that lets a terminal check
the payload before it replaces its gallery and check its sealed file after a
restart:

    {"b64": base64(payload), "digest": SHA-256 hex of the payload,
     "size": payload bytes, "subjects": number of subjects, "rows": encodings}

About 700 KB of section text per 1,000 subjects with one encoding each (the
512 bytes of a row take 683 characters of base64), 45 chunks of 16,000
characters. Only encodings, never photos (ARCHITECTURE: personal data
minimised), and subject ids, never ID numbers.

Needs no numpy: the gateway joins stored float32 rows; this module only packs
headers and checks what arrives. Pure; runs on MicroPython.
"""

import binascii
import hashlib
import json
import struct

MODEL = "dlib_face_recognition_resnet_model_v1/5pt"
DIM = 128
ROW_BYTES = 4 * DIM
ALIGN = 16
MAX_SUBJECT_CHARS = 64
MAX_ROWS_PER_SUBJECT = 10        # enrollment keeps the newest 10 (firmware/face/enrollment.py)
MAX_B64_CHARS = 64 * 1024 * 1024  # ~98,000 encodings: a shop's town is a few thousand subjects


class FormatError(ValueError):
    """A payload or section that is not a usable gallery; the message says why."""


def header(subjects, counts, created="", model=MODEL):
    """The payload's leading bytes: length, header JSON, padding."""
    head = {"model": model, "dim": DIM, "subjects": list(subjects), "counts": [int(c) for c in counts],
            "created": created}
    try:
        text = json.dumps(head, separators=(",", ":"))
    except TypeError:  # an older MicroPython json takes no separators
        text = json.dumps(head)
    data = text.encode("utf-8")
    pad = (ALIGN - (4 + len(data)) % ALIGN) % ALIGN
    return struct.pack("<I", len(data) + pad) + data + b" " * pad


def build(entries, created=""):
    """A payload from [(subject, rows)] in order; `rows` are float32 LE bytes,
    a whole number of 128-value rows (as the gateway stores them)."""
    subjects, counts, blocks = [], [], []
    for subject, rows in entries:
        if not rows or len(rows) % ROW_BYTES:
            raise FormatError("%s: %d bytes of encodings is not whole rows" % (subject, len(rows)))
        subjects.append(subject)
        counts.append(len(rows) // ROW_BYTES)
        blocks.append(bytes(rows))
    return header(subjects, counts, created) + b"".join(blocks)


def pack_rows(rows):
    """[[128 numbers], ...] -> float32 LE bytes."""
    out = []
    fmt = "<%df" % DIM
    for row in rows:
        if len(row) != DIM:
            raise FormatError("an encoding has %d values, not %d" % (len(row), DIM))
        out.append(struct.pack(fmt, *row))
    return b"".join(out)


def unpack_rows(data):
    """float32 LE bytes -> [[128 floats], ...]."""
    fmt = "<%df" % DIM
    return [list(struct.unpack(fmt, data[i:i + ROW_BYTES])) for i in range(0, len(data), ROW_BYTES)]


def parse(payload):
    """Check a payload; returns (header, offset of the first encoding).

    Everything a terminal relies on is checked: the model and dimension (an
    encoding from another model compares as noise), one count per subject, no
    subject twice, at least one row each, and exactly the rows the counts add
    up to."""
    if len(payload) < 4:
        raise FormatError("payload truncated")
    hlen = struct.unpack("<I", bytes(payload[:4]))[0]
    if 4 + hlen > len(payload):
        raise FormatError("header length %d beyond the payload" % hlen)
    try:
        head = json.loads(bytes(payload[4:4 + hlen]).decode("utf-8"))
    except (ValueError, UnicodeError) as err:
        raise FormatError("bad header: %s" % err)
    if not isinstance(head, dict):
        raise FormatError("bad header: not an object")
    model, dim = head.get("model"), head.get("dim")
    if model != MODEL or dim != DIM:
        raise FormatError("encodings from model %s/%s, this format carries %s/%d" % (model, dim, MODEL, DIM))
    subjects, counts = head.get("subjects"), head.get("counts")
    if not isinstance(subjects, list) or not isinstance(counts, list) or len(subjects) != len(counts):
        raise FormatError("bad header: subjects and counts must be lists of one length")
    seen = set()
    rows = 0
    for i in range(len(subjects)):
        subject, count = subjects[i], counts[i]
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_CHARS:
            raise FormatError("bad subject id at %d" % i)
        if subject in seen:
            raise FormatError("subject %s appears twice" % subject)
        seen.add(subject)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise FormatError("subject %s: count must be a positive integer" % subject)
        rows += count
    if not isinstance(head.get("created", ""), str):
        raise FormatError("bad header: created must be a string")
    body = len(payload) - 4 - hlen
    if body != rows * ROW_BYTES:
        raise FormatError("counts add up to %d rows, the payload holds %d bytes of encodings" % (rows, body))
    return head, 4 + hlen


def _sha256_hex(data):
    return binascii.hexlify(hashlib.sha256(data).digest()).decode()


def section(payload):
    """The `gallery` section content carrying a payload."""
    head, _ = parse(payload)
    b64 = binascii.b2a_base64(payload).decode().replace("\n", "")
    return {"b64": b64, "digest": _sha256_hex(payload), "size": len(payload),
            "subjects": len(head["subjects"]), "rows": sum(head["counts"])}


def summary(content):
    """The section without its payload: what a terminal may keep in the clear."""
    out = {}
    for name in content:
        if name != "b64":
            out[name] = content[name]
    return out


def payload_of(content):
    """The checked payload of a section (raises FormatError): base64 that
    decodes, to the announced size and digest, in the format above, holding
    the announced numbers of subjects and rows."""
    try:
        payload = binascii.a2b_base64(content["b64"].encode())  # MicroPython decodes bytes only
    except (ValueError, TypeError, AttributeError) as err:
        raise FormatError("b64 does not decode: %s" % err)
    if len(payload) != content["size"]:
        raise FormatError("payload is %d bytes, the section says %d" % (len(payload), content["size"]))
    if _sha256_hex(payload) != content["digest"]:
        raise FormatError("payload digest does not match")
    head, _ = parse(payload)
    if len(head["subjects"]) != content["subjects"] or sum(head["counts"]) != content["rows"]:
        raise FormatError("payload holds %d subjects and %d rows, the section says %d and %d"
                          % (len(head["subjects"]), sum(head["counts"]), content["subjects"], content["rows"]))
    return payload
