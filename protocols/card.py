"""Subject card payload (主体信息卡): codec, layout on NTAG21x / MIFARE Classic, and
offline verification. The format is documented in docs/cards.md.

The district registry signs the payload with Ed25519 and the signed bytes include
the card's UID, so data copied onto another card fails with its own reason
(`card_copied`), distinct from a payload altered in place (`card_tampered`).
Verification is a pure function of its inputs: the payload, the UID the reader saw,
the trusted registry keys, today's date and the revocation list; the caller passes
time in.

Runs on MicroPython: signatures are checked with `cryptography` when it imports, and
otherwise with the small pure-Python Ed25519 verifier at the end of this module.
"""

from protocols.reasons import ReasonError, register

REASONS = register({
    "card_unknown": ("无法识别的卡（未写卡或非本系统卡）", "unknown or unformatted card"),
    "card_tampered": ("卡内容被篡改，签名无效", "card data altered: signature invalid"),
    "card_copied": ("卡数据与卡号不符（复制卡）", "card data belongs to another card (copied)"),
    "card_expired": ("卡已过期", "card expired"),
    "card_not_yet_valid": ("卡尚未生效", "card not valid yet"),
    "card_revoked": ("卡已挂失或注销", "card revoked"),
    "card_reader_error": ("读卡失败，请重新刷卡", "card could not be read, tap again"),
})

MAGIC = b"AQ"
VERSION = 1
DOMAIN = b"agri-quota subject card v1\x00"
SIGNATURE_SIZE = 64
KEY_ID_SIZE = 4
RECORD_TYPE = b"agriquota.cn:card"  # NFC Forum external type (TNF 4)
TNF_EXTERNAL = 0x04

TLV_NULL = 0x00
TLV_NDEF = 0x03
TLV_TERMINATOR = 0xFE

# NTAG21x capability container (page 3): magic E1, version 1.0, data area size / 8.
NTAG_CC = {"NTAG213": b"\xe1\x10\x12\x00", "NTAG215": b"\xe1\x10\x3e\x00", "NTAG216": b"\xe1\x10\x6d\x00"}
NTAG_USER_START = 4

# MIFARE Classic 1K: sector 0 holds the manufacturer block, every fourth block is a
# sector trailer; the card data uses the data blocks of sectors 1..15 in order.
CLASSIC_FIRST_BLOCK = 4
CLASSIC_BLOCKS = 64


class CardRejected(ReasonError):
    """A card that must not be accepted, with the reason shown to the clerk."""


class Card:
    """The signed facts on a subject card; dates are ISO strings (YYYY-MM-DD)."""

    def __init__(self, uid, subject_id, card_no, district, issued, expires, key_id=b"\x00" * KEY_ID_SIZE):
        self.uid = bytes(uid)
        self.subject_id = subject_id
        self.card_no = card_no
        self.district = district
        self.issued = issued
        self.expires = expires
        self.key_id = bytes(key_id)

    def to_dict(self):
        return {
            "uid": _hex(self.uid),
            "subject_id": self.subject_id,
            "card_no": self.card_no,
            "district": self.district,
            "issued": self.issued,
            "expires": self.expires,
            "key_id": _hex(self.key_id),
        }

    def __eq__(self, other):
        return isinstance(other, Card) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return "Card(%s)" % self.to_dict()


# ---------------------------------------------------------------- payload codec

def _short(field, text):
    raw = text.encode("utf-8")
    if not raw or len(raw) > 64:
        raise ValueError("%s must be 1..64 bytes of UTF-8" % field)
    return bytes([len(raw)]) + raw


def body(card):
    """The signed part of the payload (everything before the signature)."""
    uid = card.uid
    if len(uid) not in (4, 7, 10):
        raise ValueError("UID must be 4, 7 or 10 bytes")
    if len(card.key_id) != KEY_ID_SIZE:
        raise ValueError("key id must be %d bytes" % KEY_ID_SIZE)
    issued = days_from_iso(card.issued)
    expires = days_from_iso(card.expires)
    if expires < issued:
        raise ValueError("card expires before it is issued")
    return (
        MAGIC + bytes([VERSION]) + card.key_id
        + bytes([len(uid)]) + uid
        + _u16(issued) + _u16(expires)
        + _short("district", card.district)
        + _short("subject_id", card.subject_id)
        + _short("card_no", card.card_no)
    )


def signed_message(body_bytes):
    """Domain-separated, so a registry signature over other data can never pass as a card."""
    return DOMAIN + body_bytes


def decode(payload):
    """(card, body, signature) from payload bytes; raises CardRejected.

    No magic, or a version we do not know: card_unknown. The right magic but a
    structure that does not parse: card_tampered (a bit flipped in a length).
    """
    payload = bytes(payload)
    if payload[:2] != MAGIC:
        raise CardRejected("card_unknown", "no subject card payload")
    if len(payload) < 3 or payload[2] != VERSION:
        raise CardRejected("card_unknown", "payload version %s not supported" % (payload[2:3],))
    try:
        pos = 3
        key_id = payload[pos:pos + KEY_ID_SIZE]
        pos += KEY_ID_SIZE
        n = payload[pos]
        if n not in (4, 7, 10):
            raise ValueError("UID length %d" % n)
        uid = payload[pos + 1:pos + 1 + n]
        pos += 1 + n
        issued = _read_u16(payload, pos)
        expires = _read_u16(payload, pos + 2)
        pos += 4
        district, pos = _read_short(payload, pos)
        subject_id, pos = _read_short(payload, pos)
        card_no, pos = _read_short(payload, pos)
        signature = payload[pos:]
        if len(signature) != SIGNATURE_SIZE:
            raise ValueError("signature is %d bytes" % len(signature))
        card = Card(uid, subject_id, card_no, district, iso_from_days(issued), iso_from_days(expires), key_id)
    except (ValueError, IndexError, UnicodeError) as exc:
        raise CardRejected("card_tampered", "malformed payload: %s" % exc)
    return card, payload[:pos], signature


def _read_short(data, pos):
    n = data[pos]
    if n == 0 or n > 64 or pos + 1 + n > len(data):
        raise ValueError("bad field length at %d" % pos)
    return data[pos + 1:pos + 1 + n].decode("utf-8"), pos + 1 + n


def _u16(value):
    if not 0 <= value <= 0xFFFF:
        raise ValueError("date out of range")
    return bytes([value >> 8, value & 0xFF])


def _read_u16(data, pos):
    if pos + 2 > len(data):
        raise ValueError("truncated")
    return (data[pos] << 8) | data[pos + 1]


def _hex(data):
    return "".join("%02X" % b for b in data)


# ---------------------------------------------------------------- verification

def key_id(public_key):
    """First four bytes of SHA-256 of the raw public key: names the signing key."""
    import hashlib
    return hashlib.sha256(bytes(public_key)).digest()[:KEY_ID_SIZE]


def trust_store(public_keys):
    """{key id: public key} for the registry keys a terminal trusts."""
    return dict((key_id(k), bytes(k)) for k in public_keys)


def verify(payload, uid, trusted, today, revoked=()):
    """The card on `payload`, read from a card whose UID is `uid`, or CardRejected.

    `trusted` maps key id to a 32-byte Ed25519 public key (see `trust_store`);
    `today` is an ISO date; `revoked` holds revoked card numbers. Checks run from
    "is it ours" to "may it be used today", so each failure names its cause:
    unknown, tampered, copied, revoked, not yet valid, expired.
    """
    card, signed, signature = decode(payload)
    public_key = trusted.get(card.key_id)
    if public_key is None:
        raise CardRejected("card_unknown", "signed by untrusted key %s" % _hex(card.key_id))
    if not ed25519_verify(public_key, signed_message(signed), signature):
        raise CardRejected("card_tampered", "signature does not match card %s" % card.card_no)
    if card.uid != bytes(uid):
        raise CardRejected("card_copied", "payload bound to UID %s, read from %s" % (_hex(card.uid), _hex(uid)))
    if card.card_no in revoked:
        raise CardRejected("card_revoked", "card %s is on the revocation list" % card.card_no)
    day = days_from_iso(today)
    if day < days_from_iso(card.issued):
        raise CardRejected("card_not_yet_valid", "issued %s, today %s" % (card.issued, today))
    if day > days_from_iso(card.expires):
        raise CardRejected("card_expired", "expired %s, today %s" % (card.expires, today))
    return card


def issue(card, private_key):
    """Signed payload bytes (registry side, CPython with `cryptography`).

    `private_key` is a cryptography Ed25519PrivateKey or its 32-byte raw seed; the
    card's key id is set from the matching public key.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if not isinstance(private_key, Ed25519PrivateKey):
        private_key = Ed25519PrivateKey.from_private_bytes(bytes(private_key))
    public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    card.key_id = key_id(public)
    signed = body(card)
    return signed + private_key.sign(signed_message(signed))


def ed25519_verify(public_key, message, signature):
    """True when the signature is valid; `cryptography` if present, else pure Python."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return pure_ed25519_verify(public_key, message, signature)
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public_key)).verify(bytes(signature), bytes(message))
    except (InvalidSignature, ValueError):
        return False
    return True


# ---------------------------------------------------------------- card layouts

def ndef_message(payload):
    """One NDEF record of external type agriquota.cn:card holding the payload."""
    payload = bytes(payload)
    if len(payload) < 256:
        header = bytes([0xD0 | TNF_EXTERNAL, len(RECORD_TYPE), len(payload)])  # MB ME SR
    else:
        n = len(payload)
        header = bytes([0xC0 | TNF_EXTERNAL, len(RECORD_TYPE), n >> 24, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF])
    return header + RECORD_TYPE + payload


def parse_ndef(message):
    """The payload of our record in an NDEF message; other records are skipped."""
    pos = 0
    message = bytes(message)
    while pos < len(message):
        flags = message[pos]
        type_len = message[pos + 1]
        if flags & 0x10:
            length = message[pos + 2]
            pos += 3
        else:
            length = int.from_bytes(message[pos + 2:pos + 6], "big")
            pos += 6
        id_len = 0
        if flags & 0x08:
            id_len = message[pos]
            pos += 1
        rtype = message[pos:pos + type_len]
        pos += type_len + id_len
        payload = message[pos:pos + length]
        pos += length
        if pos > len(message):
            raise CardRejected("card_tampered", "NDEF record runs past the message")
        if flags & 0x07 == TNF_EXTERNAL and rtype == RECORD_TYPE:
            return payload
        if flags & 0x40:  # ME: last record
            break
    raise CardRejected("card_unknown", "no subject card record in the NDEF message")


def tlv_image(payload):
    """NDEF TLV + terminator, as written from NTAG page 4 or MIFARE block 4."""
    message = ndef_message(payload)
    n = len(message)
    if n < 0xFF:
        head = bytes([TLV_NDEF, n])
    else:
        head = bytes([TLV_NDEF, 0xFF, n >> 8, n & 0xFF])
    return head + message + bytes([TLV_TERMINATOR])


def tlv_extent(data):
    """(offset, length) of the NDEF message in user memory, from the first bytes.

    Returns None when more bytes are needed to know; raises card_unknown on blank or
    foreign memory, so a reader can stop after the first read.
    """
    pos = 0
    data = bytes(data)
    while pos < len(data):
        t = data[pos]
        if t == TLV_NULL:
            pos += 1
            continue
        if t == TLV_TERMINATOR:
            raise CardRejected("card_unknown", "empty NDEF area")
        if pos + 1 >= len(data):
            return None
        if data[pos + 1] == 0xFF:
            if pos + 3 >= len(data):
                return None
            length = (data[pos + 2] << 8) | data[pos + 3]
            start = pos + 4
        else:
            length = data[pos + 1]
            start = pos + 2
        if t == TLV_NDEF:
            return start, length
        if t in (0x01, 0x02, 0xFD):  # lock control, memory control, proprietary
            pos = start + length
            continue
        raise CardRejected("card_unknown", "unformatted card (TLV 0x%02X)" % t)
    return None


def parse_user_memory(data):
    """The card payload from NTAG user memory (page 4 on) or Classic data blocks."""
    extent = tlv_extent(data)
    if extent is None:
        raise CardRejected("card_unknown", "no NDEF message on card")
    start, length = extent
    if start + length > len(data):
        raise CardRejected("card_tampered", "NDEF message longer than the memory read")
    return parse_ndef(data[start:start + length])


def ntag_pages(payload, first_page=NTAG_USER_START):
    """{page: 4 bytes} to write the payload on an NTAG21x."""
    image = tlv_image(payload)
    image += b"\x00" * (-len(image) % 4)
    return dict((first_page + i // 4, image[i:i + 4]) for i in range(0, len(image), 4))


def classic_data_blocks(count=None):
    """Data block numbers of a MIFARE Classic 1K from block 4, trailers skipped."""
    blocks = [b for b in range(CLASSIC_FIRST_BLOCK, CLASSIC_BLOCKS) if b % 4 != 3]
    return blocks if count is None else blocks[:count]


def classic_blocks(payload):
    """{block: 16 bytes} to write the payload on a MIFARE Classic 1K."""
    image = tlv_image(payload)
    image += b"\x00" * (-len(image) % 16)
    chunks = [image[i:i + 16] for i in range(0, len(image), 16)]
    numbers = classic_data_blocks()
    if len(chunks) > len(numbers):
        raise ValueError("payload too large for a MIFARE Classic 1K")
    return dict(zip(numbers, chunks))


# ---------------------------------------------------------------- dates

def days_from_iso(text):
    """Days since 1970-01-01 for YYYY-MM-DD (proleptic Gregorian, no datetime needed)."""
    if isinstance(text, int):
        return text
    parts = text.split("-")
    if len(parts) != 3 or len(parts[0]) != 4 or len(parts[1]) != 2 or len(parts[2]) != 2:
        raise ValueError("date must be YYYY-MM-DD: %r" % (text,))
    y, m, d = int(parts[0]), int(parts[1]), int(parts[2])
    if not (1 <= m <= 12 and 1 <= d <= _month_days(y, m)):
        raise ValueError("no such date: %r" % (text,))
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def iso_from_days(days):
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    y = yoe + era * 400
    if m <= 2:
        y += 1
    return "%04d-%02d-%02d" % (y, m, d)


def _month_days(y, m):
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


# ---------------------------------------------------------------- pure Ed25519 verify
# RFC 8032 section 5.1.7, cofactorless, for interpreters without `cryptography`
# (the MicroPython card-only terminal). Verification only: no secret is handled, so
# the variable-time arithmetic leaks nothing.

# The curve's constants as literals, not computed at import (pow over 255-bit
# numbers) or on first use: frozen into a board's firmware, integer literals
# stay in flash, and a table built during the first card's verification left
# its numbers scattered over the free heap of a small board (docs/mcu.md
# "Memory and size"). tests/test_card_format.py verifies RFC 8032's vector and
# `cryptography`'s signatures with them.
_P = 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed  # 2**255 - 19
# 2**252 + 27742317777372353535851937790883648493
_L = 0x1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed
_D = 0x52036cee2b6ffe738cc740797779e89800700a4d4141d8ab75eb4dca135978a3  # -121665 / 121666 mod _P
_SQRT_M1 = 0x2b8324804fc1df0b2b4d00993dfbd7a72f431806ad2fe478c4ee1b274a0ea0b0  # 2**((_P - 1) / 4) mod _P
_BX = 0x216936d3cd6e53fec0a4e231fdd6dc5c692cc7609525a7b2c9562d608f25d51a
_BY = 0x6666666666666666666666666666666666666666666666666666666666666658  # 4/5 mod _P
# (x, y, z, x*y) of the base point
_BASE = (_BX, _BY, 1, 0x67875f0fd78b766566ea4e8e64abe37d20f09f80775152f56dde8ab3a5b7dda3)


def _inv(x):
    return pow(x, _P - 2, _P)


def _recover_x(y, sign):
    if y >= _P:
        return None
    x2 = (y * y - 1) * _inv(_D * y * y + 1) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if x & 1 != sign:
        x = _P - x
    return x


def _point_decode(raw):
    if len(raw) != 32:
        return None
    y = int.from_bytes(raw, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


def _point_encode(pt):
    zi = _inv(pt[2])
    x = pt[0] * zi % _P
    y = pt[1] * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _point_add(a, b):
    aa = (a[1] - a[0]) * (b[1] - b[0]) % _P
    bb = (a[1] + a[0]) * (b[1] + b[0]) % _P
    cc = 2 * a[3] * b[3] * _D % _P
    dd = 2 * a[2] * b[2] % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _scalar_mult(k, pt):
    acc = (0, 1, 1, 0)
    while k:
        if k & 1:
            acc = _point_add(acc, pt)
        pt = _point_add(pt, pt)
        k >>= 1
    return acc


def pure_ed25519_verify(public_key, message, signature):
    public_key = bytes(public_key)
    signature = bytes(signature)
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a = _point_decode(public_key)
    if a is None or _point_decode(signature[:32]) is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    k = int.from_bytes(sha512(signature[:32] + public_key + bytes(message)), "little") % _L
    neg_a = (_P - a[0], a[1], a[2], _P - a[3])
    check = _point_add(_scalar_mult(s, _BASE), _scalar_mult(k, neg_a))
    return _point_encode(check) == signature[:32]


# FIPS 180-4 4.2.3 and 5.3.5: the first 64 bits of the fractional parts of the
# cube roots of the first 80 primes, and of the square roots of the first 8.
# Literals, not computed (they were once, on first use, into a list: 80
# numbers that stayed scattered over a small board's heap); pure_sha512 is
# checked against hashlib by tests/test_card_format.py.
_K512 = (
    0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
    0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
    0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
    0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
    0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
    0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
    0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
    0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
    0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
    0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
    0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
    0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
    0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
    0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
    0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
    0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
    0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
    0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
    0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
    0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817,
)
_H512 = (
    0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
    0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
)
_M64 = 0xFFFFFFFFFFFFFFFF


def _rotr(x, n):
    return ((x >> n) | (x << (64 - n))) & _M64


def sha512(data):
    """SHA-512 (FIPS 180-4); MicroPython's hashlib has only SHA-256."""
    try:
        import hashlib
        return hashlib.sha512(bytes(data)).digest()
    except (ImportError, AttributeError):
        pass
    return pure_sha512(data)


def pure_sha512(data):
    k = _K512
    h = _H512
    data = bytes(data)
    bits = len(data) * 8
    data += b"\x80" + b"\x00" * ((112 - (len(data) + 1)) % 128) + bits.to_bytes(16, "big")
    for off in range(0, len(data), 128):
        w = [int.from_bytes(data[off + 8 * i:off + 8 * i + 8], "big") for i in range(16)]
        for i in range(16, 80):
            s0 = _rotr(w[i - 15], 1) ^ _rotr(w[i - 15], 8) ^ (w[i - 15] >> 7)
            s1 = _rotr(w[i - 2], 19) ^ _rotr(w[i - 2], 61) ^ (w[i - 2] >> 6)
            w.append((w[i - 16] + s0 + w[i - 7] + s1) & _M64)
        a, b, c, d, e, f, g, hh = h
        for i in range(80):
            t1 = (hh + (_rotr(e, 14) ^ _rotr(e, 18) ^ _rotr(e, 41)) + ((e & f) ^ (~e & g)) + k[i] + w[i]) & _M64
            t2 = ((_rotr(a, 28) ^ _rotr(a, 34) ^ _rotr(a, 39)) + ((a & b) ^ (a & c) ^ (b & c))) & _M64
            hh, g, f, e, d, c, b, a = g, f, e, (d + t1) & _M64, c, b, a, (t1 + t2) & _M64
        h = [(x + y) & _M64 for x, y in zip(h, (a, b, c, d, e, f, g, hh))]
    return b"".join(x.to_bytes(8, "big") for x in h)
