"""Subject cards through the PN532: read the payload, write it, read-and-verify.

The layout (NDEF TLV from NTAG page 4, or from MIFARE Classic block 4 in the data
blocks of sectors 1..15) is `protocols.card`'s; this module only moves bytes.
Reads stop as soon as the TLV length says the payload is complete, which keeps a
tap to a handful of InDataExchange round trips.
"""

import logging

from protocols import card as card_format
from protocols.card import CardRejected
from hardware.pn532.errors import CardError, ReaderError

log = logging.getLogger(__name__)

TRANSPORT_KEY = b"\xff" * 6
DEFAULT_KEYS = (TRANSPORT_KEY,)


def read_payload(reader, target, keys=DEFAULT_KEYS, key_b=False):
    """Payload bytes from the card; CardRejected('card_unknown') for blank or foreign cards."""
    with reader.lock:
        if target.kind == "ntag":
            return _read_ntag(reader, target)
        if target.kind == "classic1k":
            return _read_classic(reader, target, keys, key_b)
    raise CardRejected("card_unknown", "unsupported card type (SENS_RES %s SEL_RES %02X)"
                       % (target.sens_res.hex(), target.sel_res))


def read_and_verify(reader, target, trusted, today, revoked=(), keys=DEFAULT_KEYS):
    """The verified card, or CardRejected with the reason; reader failures become
    `card_reader_error` so the clerk is asked to tap again."""
    try:
        payload = read_payload(reader, target, keys)
    except ReaderError as exc:
        raise CardRejected("card_reader_error", "%s (%s)" % (exc.detail or exc.code, exc.code))
    return card_format.verify(payload, target.uid, trusted, today, revoked)


def _read_ntag(reader, target):
    first = reader.ntag_read(target, 3)  # CC + pages 4..6 in one round trip
    cc = first[:4]
    if cc[0] != 0xE1:
        raise CardRejected("card_unknown", "NTAG not NDEF formatted (CC %s)" % cc.hex())
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


def _read_classic(reader, target, keys, key_b):
    data = b""
    sector = None
    for block in card_format.classic_data_blocks():
        if block // 4 != sector:
            target = authenticate(reader, target, block, keys, key_b)
            sector = block // 4
        data += reader.classic_read(target, block)
        extent = card_format.tlv_extent(data)
        if extent is not None and len(data) >= extent[0] + extent[1]:
            break
    return card_format.parse_user_memory(data)


def authenticate(reader, target, block, keys, key_b=False):
    """Authenticate block's sector with the first key that works; returns the target.

    A failed MIFARE authentication mutes the card until it is selected again, so
    each further key is tried after a fresh InListPassiveTarget of the same UID.
    """
    last = None
    for i, key in enumerate(keys):
        if i:
            again = reader.list_target()
            if again is None or again.uid != target.uid:
                raise CardError(None, "card left the field during authentication")
            target = again
        try:
            reader.classic_auth(target, block, key, key_b)
            return target
        except CardError as exc:
            if exc.code != "pn532_auth_failed":
                raise
            last = exc
    raise last or CardError(None, "no key to try", "pn532_auth_failed")


def write_payload(reader, target, payload, keys=DEFAULT_KEYS, key_b=False):
    """Write a signed payload and read it back; ReaderError or ValueError on failure."""
    with reader.lock:
        if target.kind == "ntag":
            cc = reader.ntag_read(target, 3)[:4]
            if cc[0] != 0xE1:
                raise CardRejected("card_unknown", "NTAG not NDEF formatted (CC %s)" % cc.hex())
            pages = card_format.ntag_pages(payload)
            if len(pages) * 4 > cc[2] * 8:
                raise ValueError("payload of %d bytes does not fit this NTAG" % len(payload))
            for page in sorted(pages):
                reader.ntag_write(target, page, pages[page])
        elif target.kind == "classic1k":
            blocks = card_format.classic_blocks(payload)
            sector = None
            for block in sorted(blocks):
                if block // 4 != sector:
                    target = authenticate(reader, target, block, keys, key_b)
                    sector = block // 4
                reader.classic_write(target, block, blocks[block])
        else:
            raise CardRejected("card_unknown", "unsupported card type")
        again = reader.list_target()
        if again is None or again.uid != target.uid:
            raise CardError(None, "card left the field before the read-back")
        written = read_payload(reader, again, keys, key_b)
        if written != payload:
            raise CardError(None, "read-back differs from what was written")
        log.info("subject card written uid=%s bytes=%d", target.uid.hex(), len(payload))
        return again
