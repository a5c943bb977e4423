"""The unix twins of the board's devices (docs/mcu.md "Testing on the unix port").

The UART is the slave side of the PN532 emulator's pseudo-terminal, so every
byte the firmware writes is a byte the emulator decodes as a real PN532 would;
the buzzer, the LED and the OLED print what they do as one line each on
stdout ("BUZZER on", "LED off", "OLED 已批准|..."), which the tests read beside
the sale results. `Field` asks the emulator process (simulator/pn532_field.py)
over its control socket to put a card file on the reader, the way a farmer
puts the card on a real one.
"""

import select
import socket
import termios
import time

VMIN = 6    # termios c_cc indices on Linux: a read returns what is there, at once
VTIME = 5


class PtyUart:
    """A serial line by path (the emulator's pty, or a USB adapter's tty),
    reopened after the reader was unplugged and plugged in again."""

    def __init__(self, path):
        self.path = path
        self._file = None
        self._poll = None
        self.opened = 0   # the reader initialises the PN532 again when this changes

    @property
    def is_open(self):
        return self._file is not None

    def _require(self):
        if self._file is None:
            self.open()
        return self._file

    def open(self):
        self.close()
        f = open(self.path, "r+b")
        fd = f.fileno()
        attrs = termios.tcgetattr(fd)
        termios.setraw(fd)
        attrs = termios.tcgetattr(fd)
        attrs[6][VMIN] = 0
        attrs[6][VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        poll = select.poll()
        poll.register(f, select.POLLIN)
        self._file, self._poll = f, poll
        self.opened += 1

    def close(self):
        f, self._file = self._file, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    def write(self, data):
        f = self._require()
        try:
            f.write(data)
        except OSError:
            self.close()
            raise

    def read(self, wait_ms=10):
        f = self._require()
        try:
            events = self._poll.poll(wait_ms)
            if not events:
                return b""
            if events[0][1] & (select.POLLHUP | select.POLLERR):
                raise OSError(5, "line hung up")
            return f.read(256) or b""
        except OSError:
            self.close()
            raise

    def discard_input(self):
        while self.read(0):
            pass


class RecordedPin:
    """A GPIO output (buzzer, LED) that prints its changes."""

    def __init__(self, name, out):
        self.name = name
        self.out = out
        self.value = 0

    def on(self):
        self.value = 1
        self.out("%s on" % self.name)

    def off(self):
        self.value = 0
        self.out("%s off" % self.name)


class RecordedDisplay:
    """The OLED as one stdout line: the lines shown, joined with |."""

    def __init__(self, out):
        self.out = out
        self.lines = []

    def show(self, lines):
        self.lines = list(lines)[:4]
        self.out("OLED " + "|".join(self.lines))


class LineFile:
    """A file another process appends lines to, read from where the last
    read stopped: the label scanner's twin (a test writes what a scanner
    would send, one code a line) and the buttons' (`NEXT`, `OK`). A line is
    taken only once its newline is there, as a scanner's CR/LF ends a code."""

    def __init__(self, path):
        self.path = path
        self._offset = 0
        self._held = b""

    def _read(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read(512)
        except OSError:
            return []
        self._offset += len(data)
        data = self._held + data
        parts = data.split(b"\n")
        self._held = parts.pop()
        out = []
        for part in parts:
            line = part.decode().strip()
            if line:
                out.append(line)
        return out

    def lines(self):
        return self._read()

    def presses(self):
        return self._read()


class HostNetwork:
    """The unix port is on the host's network: nothing to join."""

    def ensure(self):
        return True


class Field:
    """The emulated reader's field, through the emulator's control socket:
    one command a line (`PUT <card file>`, `REMOVE`), answered `OK` or `ERR ...`."""

    def __init__(self, address):
        host, port = address.rsplit(":", 1)
        self.address = socket.getaddrinfo(host, int(port))[0][-1]

    def _call(self, line):
        sock = socket.socket()
        try:
            sock.connect(self.address)
            sock.write((line + "\n").encode())
            answer = sock.readline().decode().strip()
        finally:
            sock.close()
        if answer != "OK":
            raise OSError(5, "pn532 field: %s -> %s" % (line, answer))

    def put(self, card_file):
        self._call("PUT " + card_file)

    def remove(self):
        self._call("REMOVE")


def out(line):
    print(line)


def make(config):
    reader = config["reader"]
    field = Field(reader["control"]) if reader.get("control") else None
    scanner = LineFile(reader["scanner"]) if reader.get("scanner") else None
    buttons = LineFile(reader["buttons"]) if reader.get("buttons") else None
    return _board(PtyUart(reader["port"]), RecordedPin("BUZZER", out), RecordedPin("LED", out),
                  RecordedDisplay(out), HostNetwork(), field, scanner, buttons)


def _board(*parts):
    import board
    return board.Board(*parts)
