"""The PN532's simulated twin: a PN532 on a pseudo-terminal pair (os.openpty).

The driver opens the pty's slave side exactly as it opens /dev/ttyS0, so every byte
the tests assert is a byte the real driver wrote. The emulator decodes frames with
the shared codec, answers as the user manual says (ACK, then the response), and
keeps a transcript of both directions. Cards are put on and taken off the field;
faults are queued and each applies to the next command(s):

  noise         junk bytes before the ACK
  slow_ack      ACK and answer after `delay` seconds
  no_ack        answer without the ACK
  mute          nothing at all (the command never arrived)
  no_answer     ACK but no answer (the host has to cancel)
  bad_checksum  answer with a broken data checksum (a NACK gets the good one,
                unless resends=True: then every resend is broken too)
  error_frame   syntax-error frame instead of the answer
and `remove_card_after(n)` takes the card away after n more card exchanges
(a card pulled away mid-read). `unplug()`/`replug()` close the pty and open a new
one behind the same symlink, like a USB adapter coming back as the same
/dev/serial/by-id name.

It adds no delay of its own unless `baud` is given: then each frame is released
only after the time its bytes need on a real UART at that rate.
"""

import logging
import os
from collections import deque
import select
import threading
import time
import tty

from protocols import pn532
from hardware.pn532 import emulated_cards

log = logging.getLogger(__name__)

FIRMWARE = b"\x32\x01\x06\x07"  # PN532, firmware 1.6, supports ISO 14443 A/B and ISO 18092
TRANSCRIPT_LIMIT = 100000
FAULTS = ("noise", "slow_ack", "no_ack", "mute", "no_answer", "bad_checksum", "error_frame")
_RF_ITEM_SIZES = {0x01: 1, 0x02: 3, 0x04: 1, 0x05: 3, 0x0A: 11, 0x0B: 8, 0x0C: 3, 0x0D: 9}


class PN532Emulator:
    def __init__(self, link=None, firmware=FIRMWARE, baud=None, clock=time.monotonic):
        self.link = link
        self.firmware = bytes(firmware)
        self.baud = baud
        self.clock = clock
        # Bounded, so an emulator left running in a simulator does not grow for ever.
        self.transcript = deque(maxlen=TRANSCRIPT_LIMIT)  # (direction "host" | "pn532", bytes)
        self.commands = deque(maxlen=TRANSCRIPT_LIMIT)  # pn532.Frame of every command received
        self.card = None
        self.empty_polls = 0  # InListPassiveTarget answered "no target"
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._faults = []
        self._remove_after = None
        self._thread = None
        self._master = self._slave = None
        self._reset_chip()

    # ------------------------------------------------------------ life cycle

    def start(self):
        master, slave = os.openpty()
        tty.setraw(slave)
        self._master, self._slave = master, slave
        self.slave_name = os.ttyname(slave)
        if self.link:
            tmp = self.link + ".new"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self.slave_name, tmp)
            os.replace(tmp, self.link)
        self._wake_r, self._wake_w = os.pipe()
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="pn532-emulator", daemon=True)
        self._thread.start()
        log.info("pn532 emulator started path=%s", self.path)
        return self

    @property
    def path(self):
        return self.link or self.slave_name

    def stop(self):
        if self._thread is None:
            return
        self._running = False
        os.write(self._wake_w, b"x")
        self._thread.join(5)
        self._thread = None
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._master = self._slave = None

    close = stop

    def unplug(self):
        """The reader disappears: the pty closes and the symlink goes away."""
        self.stop()
        if self.link and os.path.lexists(self.link):
            os.unlink(self.link)

    def replug(self):
        """A fresh, powered-down PN532 behind the same path (the card stays on the field)."""
        self._reset_chip()
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.link:
            self.unplug()
        else:
            self.stop()

    def _reset_chip(self):
        with self._lock:
            self.awake = False
            self.sam_configured = False
            self.passive_retries = 0xFF
            self.target_active = False
            self._decoder = pn532.Decoder()
            self._outbox = []  # [due time, bytes]
            self._last_response = None
            self._corrupt_resends = False

    # ------------------------------------------------------------ the field

    def put(self, card):
        with self._lock:
            self.card = card
            self.target_active = False
            self._changed.notify_all()
        log.info("pn532 emulator card on field uid=%s", pn532.hexstr(card.uid))
        return card

    def remove(self):
        with self._lock:
            self.card = None
            self._changed.notify_all()

    def wait_empty_polls(self, n, timeout=10.0):
        """Block until `n` more polls have found the field empty: a host that
        needs several misses before it calls a card removed has then seen it go,
        so the same card put back is a new tap rather than a card never lifted."""
        with self._lock:
            target = self.empty_polls + n
        if not self.wait_until(lambda: self.empty_polls >= target, timeout):
            raise TimeoutError("the host did not poll the empty field %d times in %.1fs" % (n, timeout))

    def remove_card_after(self, exchanges):
        """Take the card away right before the (n+1)-th card exchange from now."""
        with self._lock:
            self._remove_after = exchanges

    # ------------------------------------------------------------ faults and transcript

    def inject(self, fault, times=1, **params):
        if fault not in FAULTS:
            raise ValueError("unknown fault %r; known: %s" % (fault, ", ".join(FAULTS)))
        with self._lock:
            for _ in range(times):
                self._faults.append((fault, params))

    def send(self, data):
        """Bytes on the line right now (spontaneous noise)."""
        with self._lock:
            self._outbox.append([self.clock(), bytes(data)])
        os.write(self._wake_w, b"x")

    def host_bytes(self):
        return b"".join(data for who, data in list(self.transcript) if who == "host")

    def pn532_bytes(self):
        return b"".join(data for who, data in list(self.transcript) if who == "pn532")

    def clear(self):
        with self._lock:
            self.transcript.clear()
            self.commands.clear()

    def wait_until(self, condition, timeout=2.0):
        """Wait (no polling) until condition() holds, e.g. a cancel ACK was received."""
        deadline = self.clock() + timeout
        with self._changed:
            while not condition():
                remaining = deadline - self.clock()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    # ------------------------------------------------------------ serving

    def _serve(self):
        master = self._master
        while self._running:
            with self._lock:
                due = min([item[0] for item in self._outbox], default=None)
            wait = 0.5 if due is None else max(0.0, due - self.clock())
            try:
                readable, _, _ = select.select([master, self._wake_r], [], [], wait)
            except (OSError, ValueError):
                return
            if self._wake_r in readable:
                os.read(self._wake_r, 64)
            if master in readable:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    data = b""
                if data:
                    self._received(data)
            self._flush_outbox(master)

    def _flush_outbox(self, master):
        now = self.clock()
        with self._lock:
            ready = sorted([item for item in self._outbox if item[0] <= now], key=lambda item: item[0])
            self._outbox = [item for item in self._outbox if item[0] > now]
            for _, data in ready:
                self.transcript.append(("pn532", data))
            if ready:
                self._changed.notify_all()
        for _, data in ready:
            try:
                os.write(master, data)
            except OSError as exc:
                log.warning("pn532 emulator write failed: %s", exc)

    def _received(self, data):
        with self._lock:
            self.transcript.append(("host", data))
            if not self.awake:
                # HSU: a sleeping PN532 only wakes on the 0x55 pulses; earlier bytes are lost.
                at = data.find(b"\x55")
                if at < 0:
                    self._changed.notify_all()
                    return
                self.awake = True
                data = data[at:]
            for frame in self._decoder.feed(data):
                self._frame(frame)
            self._changed.notify_all()

    def _frame(self, frame):
        if frame.kind == pn532.ACK_KIND:
            if self._outbox:
                log.info("pn532 emulator: host cancelled the current command")
            self._outbox = []
            self.commands.append(frame)
            return
        if frame.kind == pn532.NACK_KIND:
            self.commands.append(frame)
            if self._last_response is not None:
                answer = self._last_response
                if self._corrupt_resends:
                    answer = _corrupt(answer)
                due = self.clock() + self._wire_time(len(answer))
                self._outbox.append([due, answer])
            return
        if frame.kind != pn532.DATA_KIND or frame.tfi != pn532.TFI_HOST or not frame.data:
            return  # a corrupt host frame is ignored; the host times out and resends
        self.commands.append(frame)
        fault, params = self._faults.pop(0) if self._faults else (None, {})
        if fault == "mute":
            return
        if fault == "error_frame":
            answer = pn532.ERROR_FRAME
        else:
            answer = self._dispatch(frame.data[0], frame.data[1:])
        self._last_response = answer
        self._corrupt_resends = fault == "bad_checksum" and params.get("resends", False)
        t = self.clock() + self._wire_time(len(frame.encode()))
        out = []
        if fault == "noise":
            out.append(params.get("data", b"\x13\x00\xff\x37\xa5"))
        if fault == "slow_ack":
            t += params.get("delay", 0.3)
        if fault != "no_ack":
            out.append(pn532.ACK)
        if fault != "no_answer":
            if fault == "bad_checksum":
                answer = _corrupt(answer)
            out.append(answer)
        for data in out:
            t += self._wire_time(len(data))
            self._outbox.append([t, data])

    def _wire_time(self, nbytes):
        """Seconds `nbytes` take on a UART at self.baud (10 bits a byte); 0 when unpaced."""
        return nbytes * 10.0 / self.baud if self.baud else 0.0

    # ------------------------------------------------------------ commands

    def _dispatch(self, code, params):
        if code == pn532.GET_FIRMWARE_VERSION:
            return pn532.response(code, self.firmware)
        if code == pn532.SAM_CONFIGURATION:
            if not params or params[0] not in (1, 2, 3, 4):
                return pn532.ERROR_FRAME
            self.sam_configured = True
            return pn532.response(code)
        if code == pn532.RF_CONFIGURATION:
            if not params or _RF_ITEM_SIZES.get(params[0]) != len(params) - 1:
                return pn532.ERROR_FRAME
            if params[0] == pn532.RF_MAX_RETRIES:
                self.passive_retries = params[3]
            return pn532.response(code)
        if code == pn532.IN_LIST_PASSIVE_TARGET:
            if len(params) < 2 or params[0] not in (1, 2):
                return pn532.ERROR_FRAME
            card = self.card
            if params[1] != pn532.BRTY_106A or card is None:
                self.target_active = False
                self.empty_polls += 1
                return pn532.response(code, b"\x00")
            card.select()
            self.target_active = True
            target = pn532.Target(1, card.sens_res, card.sel_res, card.uid)
            return pn532.response(code, pn532.encode_targets_106a([target]))
        if code in (pn532.IN_DATA_EXCHANGE, pn532.IN_COMMUNICATE_THRU):
            if code == pn532.IN_DATA_EXCHANGE:
                if not params:
                    return pn532.ERROR_FRAME
                if params[0] != 1 or not self.target_active:
                    return pn532.response(code, b"\x27")
                params = params[1:]
            if self._remove_after is not None:
                if self._remove_after <= 0:
                    log.info("pn532 emulator: card taken away mid-read")
                    self.card = None
                    self._remove_after = None
                else:
                    self._remove_after -= 1
            if self.card is None:
                return pn532.response(code, bytes([emulated_cards.TIMEOUT]))
            status, data = self.card.exchange(bytes(params))
            return pn532.response(code, bytes([status]) + data)
        if code == pn532.IN_RELEASE:
            if not params:
                return pn532.ERROR_FRAME
            self.target_active = False
            return pn532.response(code, b"\x00")
        return pn532.ERROR_FRAME


def _corrupt(frame):
    """The same frame with its data checksum off by one."""
    return frame[:-2] + bytes([(frame[-2] + 1) & 0xFF]) + frame[-1:]
