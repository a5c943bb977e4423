"""A subject card through the reader: the payload off NTAG215 pages or MIFARE
Classic blocks (layout: protocols/card.py, docs/cards.md), then the registry's
Ed25519 signature, the UID binding, the revocation list and the dates checked
by `protocols.card.verify` (its pure-Python verifier: no `cryptography` here).

Reads stop as soon as the NDEF TLV says the payload is complete, so a tap is
a handful of exchanges. Reader failures become `card_reader_error` ("tap
again"), as on the Pi.
"""

from protocols import card as card_format
from protocols.card import CardRejected

from reader import ReaderError

TRANSPORT_KEY = b"\xff" * 6


def read_payload(reader, target, keys=(TRANSPORT_KEY,)):
    kind = target.kind
    if kind == "ntag":
        return _read_ntag(reader, target)
    if kind == "classic1k":
        return _read_classic(reader, target, keys)
    raise CardRejected("card_unknown", "unsupported card type (SEL_RES %02X)" % target.sel_res)


def read_and_verify(reader, target, trusted, today, revoked=(), keys=(TRANSPORT_KEY,)):
    """(card, payload): the verified card and the signed payload as read (the
    identity proof an authorization carries), or CardRejected with the reason."""
    try:
        payload = read_payload(reader, target, keys)
    except ReaderError as err:
        raise CardRejected("card_reader_error", "%s (%s)" % (err.detail or err.code, err.code))
    return card_format.verify(payload, target.uid, trusted, today, revoked), payload


def _read_ntag(reader, target):
    first = reader.ntag_read(target, 3)   # the capability container and pages 4..6 in one round trip
    cc = first[:4]
    if cc[0] != 0xE1:
        raise CardRejected("card_unknown", "NTAG not NDEF formatted")
    capacity = cc[2] * 8
    data = first[4:]
    page = 7
    while True:
        extent = card_format.tlv_extent(data)
        if extent is not None and len(data) >= extent[0] + extent[1]:
            break
        if len(data) >= capacity:
            break
        data += reader.ntag_read(target, page)
        page += 4
    return card_format.parse_user_memory(data[:capacity])


def _read_classic(reader, target, keys):
    data = b""
    sector = None
    for block in card_format.classic_data_blocks():
        if block // 4 != sector:
            target = _authenticate(reader, target, block, keys)
            sector = block // 4
        data += reader.classic_read(target, block)
        extent = card_format.tlv_extent(data)
        if extent is not None and len(data) >= extent[0] + extent[1]:
            break
    return card_format.parse_user_memory(data)


def _authenticate(reader, target, block, keys):
    """The first key that opens the sector; a failed MIFARE authentication
    mutes the card, so each further key follows a fresh selection."""
    last = None
    for i, key in enumerate(keys):
        if i:
            again = reader.list_target()
            if again is None or again.uid != target.uid:
                raise ReaderError("pn532_card_error", "card left the field during authentication")
            target = again
        try:
            reader.classic_auth(target, block, key)
            return target
        except ReaderError as err:
            if err.code != "pn532_auth_failed":
                raise
            last = err
    raise last or ReaderError("pn532_auth_failed", "no key to try")
