"""Subject cards through the PN532 on the Pi: read, read-and-verify, write.

Reading is `protocols.pn532host`'s (shared with the MicroPython terminal), here
under the reader's lock so the poller never interleaves a poll with a card's
pages; writing (the registry desk issuing a card) is the Pi's alone. The layout
(NDEF TLV from NTAG page 4, or from MIFARE Classic block 4 in the data blocks of
sectors 1..15) is `protocols.card`'s.
"""

import logging

from protocols import card as card_format
from protocols import pn532host
from protocols.card import CardRejected
from protocols.pn532host import DEFAULT_KEYS, TRANSPORT_KEY, authenticate
from hardware.pn532.errors import CardError

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_KEYS", "TRANSPORT_KEY", "authenticate", "read_and_verify", "read_payload", "write_payload"]


def read_payload(reader, target, keys=DEFAULT_KEYS, key_b=False):
    """Payload bytes from the card; CardRejected('card_unknown') for blank or foreign cards."""
    with reader.lock:
        return pn532host.read_payload(reader, target, keys, key_b)


def read_and_verify(reader, target, trusted, today, revoked=(), keys=DEFAULT_KEYS):
    """The verified card, or CardRejected with the reason; reader failures become
    `card_reader_error` so the clerk is asked to tap again."""
    with reader.lock:
        return pn532host.read_and_verify(reader, target, trusted, today, revoked, keys)[0]


def write_payload(reader, target, payload, keys=DEFAULT_KEYS, key_b=False):
    """Write a signed payload and read it back; ReaderError or ValueError on failure."""
    with reader.lock:
        if target.kind == "ntag":
            capacity, _ = pn532host.ntag_capacity(reader, target)
            pages = card_format.ntag_pages(payload)
            if len(pages) * 4 > capacity:
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
