"""The card tap at the counter: the reader looked at between the main loop's
steps, so a board, which has no stdin, sells when the farmer lays the card
on it (docs/mcu.md "A sale at the counter").

One look is one InListPassiveTarget with one passive activation round
(pn532host.PASSIVE_RETRIES), bounded by POLL_TIMEOUT_MS: an empty field
answers in a few milliseconds, so the MQTT session, the uplink and the config
sync keep their turn. The reader is looked at every POLL_MS, and after a
reader error less and less often (up to MAX_BACKOFF_MS) until it answers.
The garbage is collected before each look: the few small objects an exchange
leaves alive (the link's frame list, the decoder's rest) then go into the
lowest holes of the heap instead of wherever the last allocation stopped,
which, looked at four times a second during a config sync, cut up the free
block the sync's 17 KB chunk string needs (tests/test_mcu_memory.py failed
at 370K from bytecode without it; a collection costs a few ms on a board).

One tap is one action. `held` is the UID of the card on the reader that was
already acted on (sold to, shown its quota, read for a return); that card is
not a new tap until it has been lifted: REMOVAL_MISSES looks in a row without
it, as the Pi's poller (hardware/pn532/poller.py), since a card at the edge of
the field misses an activation now and then. A card left lying after a sale
therefore never pays for the next customer's goods. A reader error does not
count as a lifted card: a reader replugged under a card that already bought
must not sell to it again.
"""

import gc
import sys
import time

from protocols import pn532host

POLL_MS = 250          # a tap is seen within a quarter second; four short exchanges a second
POLL_TIMEOUT_MS = 200  # an empty field answers in a few ms; this only bounds a reader that went mute
REMOVAL_MISSES = 2
MAX_BACKOFF_MS = 2000


class Tap:
    held = None         # the UID of the card on the reader that was acted on
    misses = 0
    lifting = False     # the cart asks for the card that bought to be lifted (tapped.py)

    def __init__(self, reader, log):
        self.reader = reader
        self.log = log
        self.next = time.ticks_ms()
        self.wait = POLL_MS

    def watch(self, terminal):
        """Between the main loop's steps, every POLL_MS: look, and when that
        calls for something (a new tap, the card that bought still lying under
        new goods, that card lifted) do it with tapped.py, in the heap only
        meanwhile. A card the counter read for a line or the menu's return
        (`counter.last_uid`) is held as if tapped: lying there, it is no tap."""
        if time.ticks_diff(self.next, time.ticks_ms()) > 0:
            return
        try:
            counter = terminal.counter
            if counter.last_uid is not None:
                self.held, self.misses, counter.last_uid = counter.last_uid, 0, None
            gc.collect()
            try:
                target = self.reader.list_target(POLL_TIMEOUT_MS)
                self.wait = POLL_MS
            except pn532host.ReaderError as err:
                if self.wait == POLL_MS:
                    self.log("tap: reader error %s" % err.code)
                self.wait = min(self.wait * 2, MAX_BACKOFF_MS)
                return
            finally:
                self.next = time.ticks_add(time.ticks_ms(), self.wait)
            uid = target.uid if target is not None else None
            new = uid is not None and uid != self.held
            if uid is not None:
                self.held, self.misses = uid, 0
            else:
                self.misses += 1
                if self.misses >= REMOVAL_MISSES and self.held is not None:
                    self.held = None
                    self.log("tap: card lifted")
            if new or (uid is not None and terminal.cart.items and not self.lifting) or \
                    (uid is None and self.held is None and self.lifting):
                import tapped
                try:
                    tapped.act(self, terminal, target, new)
                finally:
                    sys.modules.pop("tapped", None)
        except Exception as err:   # a bug must not take the ledger's uplink down with it
            sys.print_exception(err, sys.stderr)
