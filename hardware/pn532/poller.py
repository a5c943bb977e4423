"""Card presence as events: "present (UID)" when a card arrives, "removed" when it goes.

Each poll is one bounded InListPassiveTarget (the reader sets a finite
MxRtyPassiveActivation), and between polls the thread sleeps on an Event, so an
idle terminal costs a few wake-ups a second rather than a spinning core. A card is
declared removed only after `removal_misses` polls in a row without it: one missed
activation (a card held at the edge of the field) must not restart a sale.

`on_present(reader, target)` runs in the poller thread while the reader is locked,
so reading the card cannot interleave with the next poll; its result (or the
exception it raised) travels on the present event. Reader failures (unplugged,
timeouts) produce one "reader_error" event; the poller keeps trying to reopen the
port, backing off up to `max_backoff`, and says "reader_ok" when it is back.
"""

import logging
import queue
import threading

from protocols.reasons import ReasonError
from hardware.pn532.errors import ReaderError

log = logging.getLogger(__name__)

PRESENT = "present"
REMOVED = "removed"
READER_ERROR = "reader_error"
READER_OK = "reader_ok"
REMOVAL_MISSES = 2


class CardEvent:
    def __init__(self, kind, uid=None, target=None, result=None, error=None):
        self.kind = kind
        self.uid = uid
        self.target = target
        self.result = result
        self.error = error

    def __repr__(self):
        uid = self.uid.hex().upper() if self.uid else "-"
        return "CardEvent(%s uid=%s%s)" % (self.kind, uid, " error=%s" % self.error if self.error else "")


class CardPoller:
    def __init__(self, reader, interval=0.05, on_present=None, removal_misses=REMOVAL_MISSES, max_backoff=2.0):
        self.reader = reader
        self.interval = interval
        self.on_present = on_present
        self.removal_misses = removal_misses
        self.max_backoff = max_backoff
        self.events = queue.Queue()
        self.polls = 0
        self._stop = threading.Event()
        self._thread = None
        self._current = None
        self._misses = 0
        self._failing = False

    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pn532-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def get(self, timeout):
        """The next event, or None after `timeout` seconds."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def _run(self):
        backoff = self.interval
        while not self._stop.is_set():
            try:
                for event in self.poll_once():
                    self.events.put(event)
                backoff = self.interval
            except ReaderError as exc:
                if not self._failing:
                    log.warning("pn532 poller reader error code=%s detail=%s", exc.code, exc.detail)
                    self.events.put(CardEvent(READER_ERROR, error=exc))
                    if self._current is not None:
                        self.events.put(CardEvent(REMOVED, self._current))
                        self._current = None
                self._failing = True
                backoff = min(self.max_backoff, max(backoff * 2, self.interval))
                self._stop.wait(backoff)
                continue
            self._stop.wait(self.interval)

    def poll_once(self):
        """One poll: the events it produces (empty when nothing changed)."""
        events = []
        with self.reader.lock:
            target = self.reader.list_target()
            self.polls += 1
            if self._failing:
                self._failing = False
                events.append(CardEvent(READER_OK))
            uid = target.uid if target is not None else None
            if uid is not None and uid == self._current:
                self._misses = 0
                return events
            if uid is None:
                if self._current is None:
                    return events
                self._misses += 1
                if self._misses < self.removal_misses:
                    return events
            if self._current is not None:
                events.append(CardEvent(REMOVED, self._current))
            self._current = uid
            self._misses = 0
            if target is not None:
                events.append(self._present(target))
        return events

    def _present(self, target):
        result = error = None
        if self.on_present is not None:
            try:
                result = self.on_present(self.reader, target)
            except ReasonError as exc:
                error = exc
        return CardEvent(PRESENT, target.uid, target, result, error)
