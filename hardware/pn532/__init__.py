"""PN532 NFC reader on the HSU (UART) interface: the real driver over pyserial,
a card poller, the card reader/writer for subject cards, and the simulated twin
(an emulator on a pseudo-terminal that speaks the same frames).

Layers, each knowing only the one below (as in nfcpy): `port` (a URL -> a serial
port that can be reopened) -> the link (frames, ACK/NACK, timeouts, cancel) and
the PN532 commands, both `protocols.pn532host`'s, shared with the MicroPython
terminal -> `reader` (a locked PN532 on a URL, with the write commands) ->
`cards` (subject card on NTAG21x or MIFARE Classic) and `poller`
(present/removed events).
"""

from hardware.pn532.errors import ReaderError
from hardware.pn532.reader import PN532

__all__ = ["PN532", "ReaderError"]
