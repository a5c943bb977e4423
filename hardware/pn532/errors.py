"""Reader errors with stable reason codes, so a failed tap is logged and shown the
same way everywhere. They live with the exchange they come from
(protocols/pn532host.py, shared with the MicroPython terminal); a card-level
rejection (unknown, tampered, ...) is `protocols.card.CardRejected`."""

from protocols.pn532host import CardError, ReaderDisconnected, ReaderError, ReaderTimeout

__all__ = ["CardError", "NoCard", "ReaderDisconnected", "ReaderError", "ReaderTimeout"]


class NoCard(ReaderError):
    def __init__(self, detail=""):
        super().__init__("pn532_no_card", detail)
