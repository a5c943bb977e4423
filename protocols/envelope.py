"""The record envelope, batches and acks of wire protocol v1 (docs/protocol.md).

A record is signed and chained on the terminal the moment it is written to the
ledger, and never changes afterwards: the ledger stores the envelope verbatim,
and the uplink sends those stored bytes. So the gateway can check, per record,
that it came from the terminal holding that key (`mac`), and, across records,
that nothing was removed or rewritten in between (`prev` is the digest of the
record before, `seq` counts up from 1 without holes).

    digest = SHA-256(canonical(record without "mac"))
    mac    = HMAC-SHA256(terminal_key, b"record:" + canonical(record without "mac"))

The "record:" prefix separates record MACs from anything else a terminal key may
ever sign; the gateway's acks carry their own MAC under the same key, prefix
"ack:", so a forged ack cannot move a terminal's watermark. Everything here is pure and runs on MicroPython.
"""

import binascii
import hashlib

from protocols import canonical, reasons, records
from protocols.schema import ENUM, HEX, ID, INT, LIST, MAP, OBJ, OBJECT, STR, SchemaError, check

VERSION = 1
GENESIS = "0" * 64           # `prev` of seq 1
MAX_RECORD_BYTES = 16 * 1024
MAX_BATCH_BYTES = 256 * 1024
MAX_BATCH_RECORDS = 1000
SEQ_WINDOW = 2000             # most records a terminal has in flight beyond its acknowledged seq;
                              # the gateway quarantines a seq further out (seq_beyond_window)
MAX_CONTROL_BYTES = 4 * 1024

reasons.register({
    "malformed_json": ("消息不是合法的 JSON", "message is not valid JSON"),
    "not_utf8": ("消息不是合法的 UTF-8 文本", "message is not valid UTF-8"),
    "float_not_allowed": ("消息含有小数，协议只允许整数单位", "message contains a float; only integer units are allowed"),
    "payload_too_large": ("消息超过大小上限", "message exceeds the size limit"),
    "unsupported_version": ("不支持的协议版本", "unsupported protocol version"),
    "schema_invalid": ("消息字段不符合协议", "message does not match the schema"),
    "terminal_mismatch": ("记录的终端号与发送主题不符", "record terminal does not match the topic it came on"),
    "unknown_terminal": ("未登记的终端", "terminal is not registered"),
    "bad_mac": ("记录签名校验失败（可能被篡改）", "record MAC does not verify (possibly altered)"),
    "batch_not_increasing": ("批次内序号不是递增的", "sequence numbers in the batch are not increasing"),
    "seq_conflict": ("同一序号收到内容不同的记录", "a different record arrived for a sequence number already stored"),
    "ledger_gap": ("终端台账缺失记录（序号不连续）", "records missing from the terminal ledger (sequence gap)"),
    "chain_break": ("终端台账哈希链断裂（记录被改写）", "hash chain broken in the terminal ledger (records rewritten)"),
})


class Invalid(reasons.ReasonError):
    """A message or record that must not be accepted; `code` says why."""


ENVELOPE = OBJ(
    required={
        "v": INT(1, 1),
        "terminal": ID,
        "seq": INT(1),
        "prev": HEX(64),
        "time": INT(0),
        "type": ENUM(*records.TYPES),
        "body": OBJECT,  # checked against records.BODIES[type]
        "mac": HEX(64),
    }
)

BATCH = OBJ(
    required={"v": INT(1, 1), "terminal": ID, "after": INT(0), "records": LIST(OBJECT, 1, MAX_BATCH_RECORDS)},
)
ACK_SCHEMA = OBJ(required={"v": INT(1, 1), "terminal": ID, "upto": INT(0), "mac": HEX(64)},
                 optional={"seen": INT(0)})
STATUS_SCHEMA = OBJ(
    required={"v": INT(1, 1), "terminal": ID, "state": ENUM("online", "offline")},
    optional={"time": INT(0), "head": INT(0), "acked": INT(0), "versions": MAP(STR(64), 16)},
)


# ---------------------------------------------------------------- primitives

def _hex(data):
    return binascii.hexlify(data).decode()


def sha256_hex(data):
    return _hex(hashlib.sha256(data).digest())


try:
    import hmac as _hmac

    if hasattr(_hmac, "digest"):  # CPython: one call into C

        def hmac_sha256(key, data):
            return _hmac.digest(key, data, "sha256")

    else:

        def hmac_sha256(key, data):
            return _hmac.new(key, data, hashlib.sha256).digest()

except ImportError:  # MicroPython ports without micropython-lib's hmac

    def hmac_sha256(key, data):
        inner_pad, outer_pad = hmac_pads(key)
        inner = hashlib.sha256(inner_pad)
        inner.update(data)
        outer = hashlib.sha256(outer_pad)
        outer.update(inner.digest())
        return outer.digest()


def canonical_hmac_hex(key, prefix, message):
    """Hex HMAC-SHA256(key, prefix + canonical(message without "mac")): the
    MAC of acks, authorization messages and config chunks. On CPython the
    canonical bytes are built whole and go through the C HMAC in one call. On
    a card-only terminal (docs/mcu.md) they are fed to the hash piece by
    piece: building a chunk's 16,000 characters, their bytes and prefix +
    bytes whole needs several large blocks at once, which a fragmented 500K
    heap may not have even with 200K free."""
    unsigned = _unsigned(message)
    if canonical.FAST:
        return _hex(hmac_sha256(key, prefix + canonical.encode(unsigned)))
    inner_pad, outer_pad = hmac_pads(key)
    inner = hashlib.sha256(inner_pad)
    inner.update(prefix)
    canonical.feed(unsigned, inner.update)
    outer = hashlib.sha256(outer_pad)
    outer.update(inner.digest())
    return _hex(outer.digest())


def hmac_pads(key):
    """The two 64-byte blocks HMAC-SHA256 (RFC 2104) hashes first: the key,
    hashed if longer than a block, zero-padded, xored with 0x36 and 0x5c."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (64 - len(key))
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def constant_time_equal(a, b):
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b):
        diff |= ord(x) ^ ord(y) if isinstance(x, str) else x ^ y
    return diff == 0


try:
    from hmac import compare_digest as _compare
except ImportError:
    _compare = constant_time_equal


# ---------------------------------------------------------------- records

def _unsigned(record):
    out = {}
    for key in record:
        if key != "mac":
            out[key] = record[key]
    return out


def signing_bytes(record, checked=False):
    return canonical.encode(_unsigned(record), checked)


def digest(record, checked=False):
    """Hex SHA-256 of the record without its MAC: the next record's `prev`."""
    return sha256_hex(signing_bytes(record, checked))


RECORD_MAC_PREFIX = b"record:"


def mac(key, signed_bytes):
    return _hex(hmac_sha256(key, RECORD_MAC_PREFIX + signed_bytes))


def make_record(key, terminal, seq, prev, time_ms, rtype, body):
    """A signed record. Validates first, so a terminal can never write a record
    the gateway would reject for its shape."""
    record = {"v": VERSION, "terminal": terminal, "seq": seq, "prev": prev, "time": time_ms, "type": rtype, "body": body}
    record["mac"] = "0" * 64
    validate_record(record)
    signed = signing_bytes(record, checked=True)
    record["mac"] = mac(key, signed)
    if len(signed) + 80 > MAX_RECORD_BYTES:
        raise Invalid("payload_too_large", "record is %d bytes" % len(signed))
    return record


def validate_record(record):
    """Schema of the envelope and of the body for its type; raises Invalid."""
    check_shape(record, ENVELOPE, "")
    try:
        check(record["body"], records.BODIES[record["type"]], "body")
    except SchemaError as err:
        raise Invalid("schema_invalid", str(err))


def _texts(record):
    """Canonical text of a validated record without and with its MAC, from one
    encoding of the body: the gateway's hot path.

    Safe only after `validate_record`: every field but `body` is then an
    identifier, lowercase hex, a small integer or an enum value, none of which
    needs escaping, and canonical key order is body, mac, prev, seq, terminal,
    time, type, v. The vectors check this equals the general encoder."""
    body = canonical.dumps(record["body"], True)
    tail = '"prev":"%s","seq":%d,"terminal":"%s","time":%d,"type":"%s","v":%d}' % (
        record["prev"], record["seq"], record["terminal"], record["time"], record["type"], record["v"])
    return '{"body":' + body + "," + tail, '{"body":' + body + ',"mac":"' + record["mac"] + '",' + tail


def verify_record(record, key):
    """Check shape and MAC. Returns (digest, stored text): the record's digest
    (the next record's `prev`) and its canonical text with the MAC."""
    validate_record(record)
    signed_text, stored = _texts(record)
    signed = signed_text.encode("utf-8")
    if len(signed) > MAX_RECORD_BYTES:
        raise Invalid("payload_too_large", "record is %d bytes" % len(signed))
    if not _compare(mac(key, signed), record["mac"]):
        raise Invalid("bad_mac", "terminal %s seq %d" % (record["terminal"], record["seq"]))
    return sha256_hex(signed), stored


# ---------------------------------------------------------------- messages

def parse_json(payload, limit, error=None):
    """A message's JSON (bytes or text, at most `limit` bytes, no floats), or
    `error` (default Invalid) with the reason. Shared by every message codec
    in `protocols`, so the same bad input gets the same code everywhere
    (one exception: MicroPython parses bytes without decoding them first, so
    a byte that is not UTF-8 outside any string is `malformed_json` there,
    `not_utf8` on CPython; it is refused either way)."""
    error = error or Invalid
    if len(payload) > limit:
        raise error("payload_too_large", "%d bytes > %d" % (len(payload), limit))
    try:
        return canonical.loads(payload)
    except UnicodeError:
        raise error("not_utf8")
    except canonical.NotCanonical as err:
        raise error("float_not_allowed", str(err))
    except (ValueError, canonical.TooDeep) as err:
        raise error("malformed_json", str(err)[:200])


def check_shape(message, schema, what, error=None):
    """`message` if it has version 1 and matches `schema`, else `error`."""
    error = error or Invalid
    if isinstance(message, dict) and isinstance(message.get("v"), int) and message.get("v") != VERSION:
        raise error("unsupported_version", "%s version %r" % (what, message.get("v")))
    try:
        check(message, schema, what)
    except SchemaError as err:
        raise error("schema_invalid", str(err))
    return message


def encode_batch(terminal, after, stored_records):
    """Uplink payload from records as stored in the ledger (their canonical
    JSON text with MAC); the records are spliced in verbatim, never re-signed."""
    return ('{"after":%d,"records":[%s],"terminal":"%s","v":1}' % (after, ",".join(stored_records), terminal)).encode()


def decode_batch(payload):
    """Parse and check the batch frame; records are checked one by one later
    so one bad record quarantines itself, not its neighbours.
    Returns (terminal, after, [record dicts])."""
    batch = check_shape(parse_json(payload, MAX_BATCH_BYTES), BATCH, "batch")
    return batch["terminal"], batch["after"], batch["records"]


ACK_MAC_PREFIX = b"ack:"


def ack_mac(key, message):
    """HMAC-SHA256(terminal key, b"ack:" + canonical(ack without "mac")).

    An ack moves the terminal's watermark, and rows below the watermark are
    never sent again: a forged ack (from anyone who can publish on the ack
    topic, or in the path of a connection without TLS) would make the
    terminal give up records the gateway never stored. The terminal's own
    key signs it, so only the gateway (which holds that key) can."""
    return canonical_hmac_hex(key, ACK_MAC_PREFIX, message)


def encode_ack(key, terminal, upto, seen=None):
    """The gateway's cumulative ack for `terminal`, MACed with its key."""
    message = {"v": VERSION, "terminal": terminal, "upto": upto}
    if seen is not None:
        message["seen"] = seen
    message["mac"] = ack_mac(key, message)
    return canonical.encode(message)


def decode_ack(payload, key):
    """(terminal, upto, seen) of an ack that carries a good MAC under `key`;
    Invalid otherwise: `schema_invalid` without a MAC, `bad_mac` with a wrong
    one (another key, an altered field)."""
    ack = check_shape(parse_json(payload, MAX_CONTROL_BYTES), ACK_SCHEMA, "ack")
    if not _compare(ack_mac(key, ack), ack["mac"]):
        raise Invalid("bad_mac", "ack for %s upto %d" % (ack["terminal"], ack["upto"]))
    return ack["terminal"], ack["upto"], ack.get("seen")


def encode_status(terminal, state, time_ms=None, head=None, acked=None, versions=None):
    message = {"v": VERSION, "terminal": terminal, "state": state}
    if time_ms is not None:
        message["time"] = time_ms
    if head is not None:
        message["head"] = head
    if acked is not None:
        message["acked"] = acked
    if versions:
        message["versions"] = versions
    return canonical.encode(message)


def decode_status(payload):
    return check_shape(parse_json(payload, MAX_CONTROL_BYTES), STATUS_SCHEMA, "status")


def stored_text(record):
    """The canonical text of a signed record, as the ledger stores it."""
    return canonical.dumps(record, checked=True)
