"""Cards for the PN532 emulator: NTAG215/216 memory and MIFARE Classic 1K sectors.

Each card answers the commands a PN532 passes on through InDataExchange and returns
(status, data) with the PN532 status byte, because that is all the host ever sees.
A 4-bit NAK from a card cannot be told apart by the host from a card that did not
answer; both come back as status 0x01 here. MIFARE authentication runs inside the
PN532, so the emulated Classic card checks keys and access bits on plain commands.
"""

import os

OK = 0x00
TIMEOUT = 0x01
AUTH_ERROR = 0x14

NTAG_MODELS = {
    # pages in total, CC, GET_VERSION storage byte (NTAG21x data sheet 8.5 / 10.1)
    "NTAG213": (45, b"\xe1\x10\x12\x00", 0x0F),
    "NTAG215": (135, b"\xe1\x10\x3e\x00", 0x11),
    "NTAG216": (231, b"\xe1\x10\x6d\x00", 0x13),
}

TRANSPORT_KEY = b"\xff" * 6
TRANSPORT_ACCESS = b"\xff\x07\x80\x69"


class EmulatedCard:
    sens_res = b"\x00\x00"
    sel_res = 0x00

    def __init__(self, uid):
        self.uid = bytes(uid)
        self.exchanges = 0

    def select(self):
        """Called on InListPassiveTarget: the card is (re)activated."""

    def exchange(self, data):
        raise NotImplementedError


def random_uid(size=7, rng=None):
    raw = rng.randbytes(size) if rng is not None else os.urandom(size)
    # NXP 7-byte UIDs start with the manufacturer code 0x04.
    return (b"\x04" + raw[1:]) if size == 7 else raw


class Ntag21x(EmulatedCard):
    """NTAG213/215/216: 4-byte pages, READ returns 4 pages, WRITE one page."""

    sens_res = b"\x00\x44"
    sel_res = 0x00

    def __init__(self, uid=None, model="NTAG215"):
        EmulatedCard.__init__(self, uid if uid is not None else random_uid(7))
        if len(self.uid) != 7:
            raise ValueError("NTAG21x UIDs are 7 bytes")
        self.model = model
        self.page_count, cc, self._storage = NTAG_MODELS[model]
        u = self.uid
        mem = bytearray(self.page_count * 4)
        mem[0:4] = bytes([u[0], u[1], u[2], 0x88 ^ u[0] ^ u[1] ^ u[2]])
        mem[4:8] = u[3:7]
        mem[8:12] = bytes([u[3] ^ u[4] ^ u[5] ^ u[6], 0x48, 0x00, 0x00])
        mem[12:16] = cc
        cfg = (self.page_count - 4) * 4
        mem[cfg:cfg + 4] = b"\x04\x00\x00\xff"  # CFG0: AUTH0 = FF, no password protection
        mem[cfg + 4:cfg + 8] = b"\x00\x05\x00\x00"
        self.memory = mem

    @property
    def user_pages(self):
        return range(4, self.page_count - 5)

    def page(self, n):
        return bytes(self.memory[n * 4:n * 4 + 4])

    def exchange(self, data):
        self.exchanges += 1
        if not data:
            return TIMEOUT, b""
        cmd = data[0]
        if cmd == 0x30 and len(data) == 2:
            start = data[1]
            if start >= self.page_count:
                return TIMEOUT, b""
            out = b""
            for i in range(4):
                n = (start + i) % self.page_count
                out += b"\x00" * 4 if n >= self.page_count - 2 else self.page(n)  # PWD/PACK read as 0
            return OK, out
        if cmd == 0xA2 and len(data) == 6:
            n = data[1]
            if n < 2 or n >= self.page_count:
                return TIMEOUT, b""
            value = bytes(data[2:6])
            if n == 2:  # only the lock bytes are writable, and only from 0 to 1
                old = self.page(2)
                value = old[:2] + bytes([old[2] | value[2], old[3] | value[3]])
            elif n == 3:  # capability container is one-time programmable
                value = bytes(a | b for a, b in zip(self.page(3), value))
            self.memory[n * 4:n * 4 + 4] = value
            return OK, b""
        if cmd == 0x60 and len(data) == 1:
            return OK, bytes([0x00, 0x04, 0x04, 0x02, 0x01, 0x00, self._storage, 0x03])
        return TIMEOUT, b""


# Access conditions (C1 C2 C3) of MIFARE Classic data blocks: (read keys, write keys).
_DATA_ACCESS = {
    (0, 0, 0): ("AB", "AB"), (0, 1, 0): ("AB", ""), (1, 0, 0): ("AB", "B"), (1, 1, 0): ("AB", "B"),
    (0, 0, 1): ("AB", ""), (0, 1, 1): ("B", "B"), (1, 0, 1): ("B", ""), (1, 1, 1): ("", ""),
}
# Sector trailer: (write key A, read access bits, write access bits, read key B, write key B).
_TRAILER_ACCESS = {
    (0, 0, 0): ("A", "A", "", "A", "A"), (0, 1, 0): ("", "A", "", "A", ""),
    (1, 0, 0): ("B", "AB", "", "", "B"), (1, 1, 0): ("", "AB", "", "", ""),
    (0, 0, 1): ("A", "A", "A", "A", "A"), (0, 1, 1): ("B", "AB", "B", "", "B"),
    (1, 0, 1): ("", "AB", "B", "", ""), (1, 1, 1): ("", "AB", "", "", ""),
}


def access_bits(trailer, index):
    """(C1, C2, C3) for block `index` (0..3) of a sector from its trailer bytes 6..8."""
    b7, b8 = trailer[7], trailer[8]
    return ((b7 >> (4 + index)) & 1, (b8 >> index) & 1, (b8 >> (4 + index)) & 1)


class MifareClassic1K(EmulatedCard):
    """16 sectors of 4 blocks; keys and access bits enforced per sector."""

    sens_res = b"\x00\x04"
    sel_res = 0x08

    def __init__(self, uid=None):
        EmulatedCard.__init__(self, uid if uid is not None else random_uid(4))
        if len(self.uid) != 4:
            raise ValueError("this MIFARE Classic 1K model has a 4-byte UID")
        u = self.uid
        self.blocks = [bytearray(16) for _ in range(64)]
        self.blocks[0][:] = u + bytes([u[0] ^ u[1] ^ u[2] ^ u[3], 0x08, 0x04, 0x00]) + b"\x62\x63\x64\x65\x66\x67\x68\x69"
        for sector in range(16):
            self.blocks[sector * 4 + 3][:] = TRANSPORT_KEY + TRANSPORT_ACCESS + TRANSPORT_KEY
        self.select()

    def select(self):
        self.auth_sector = None
        self.auth_key = None
        self.halted = False

    def set_keys(self, sector, key_a, key_b, access=b"\x78\x77\x88\x69"):
        """Lock a sector like a district office would: read with key A, write with key B."""
        self.blocks[sector * 4 + 3][:] = bytes(key_a) + bytes(access) + bytes(key_b)

    def exchange(self, data):
        self.exchanges += 1
        if self.halted or not data:
            return TIMEOUT, b""
        cmd = data[0]
        if cmd in (0x60, 0x61) and len(data) == 12:
            return self._authenticate(data[1], "A" if cmd == 0x60 else "B", bytes(data[2:8]), bytes(data[8:12]))
        if cmd == 0x30 and len(data) == 2:
            return self._read(data[1])
        if cmd == 0xA0 and len(data) == 18:
            return self._write(data[1], bytes(data[2:18]))
        return TIMEOUT, b""

    def _authenticate(self, block, which, key, uid):
        if block >= 64 or uid != self.uid:
            self.halted = True
            return AUTH_ERROR, b""
        trailer = self.blocks[(block // 4) * 4 + 3]
        stored = bytes(trailer[0:6] if which == "A" else trailer[10:16])
        if key != stored:
            self.halted = True  # a failed authentication leaves the card mute until re-selected
            return AUTH_ERROR, b""
        self.auth_sector = block // 4
        self.auth_key = which
        return OK, b""

    def _allowed(self, block):
        return self.auth_sector is not None and block < 64 and block // 4 == self.auth_sector

    def _read(self, block):
        if not self._allowed(block):
            return TIMEOUT, b""
        sector_trailer = self.blocks[(block // 4) * 4 + 3]
        bits = access_bits(sector_trailer, block % 4)
        if block % 4 == 3:
            _, read_access, _, read_key_b, _ = _TRAILER_ACCESS[bits]
            out = b"\x00" * 6
            out += bytes(sector_trailer[6:10]) if self.auth_key in read_access else b"\x00" * 4
            out += bytes(sector_trailer[10:16]) if self.auth_key in read_key_b else b"\x00" * 6
            return OK, out
        if self.auth_key not in _DATA_ACCESS[bits][0]:
            return TIMEOUT, b""
        return OK, bytes(self.blocks[block])

    def _write(self, block, value):
        if not self._allowed(block) or block == 0:
            return TIMEOUT, b""
        trailer = self.blocks[(block // 4) * 4 + 3]
        bits = access_bits(trailer, block % 4)
        if block % 4 == 3:
            write_a, _, write_access, _, write_b = _TRAILER_ACCESS[bits]
            if self.auth_key not in write_a + write_access + write_b:
                return TIMEOUT, b""
            new = bytearray(trailer)
            if self.auth_key in write_a:
                new[0:6] = value[0:6]
            if self.auth_key in write_access:
                new[6:10] = value[6:10]
            if self.auth_key in write_b:
                new[10:16] = value[10:16]
            trailer[:] = new
            return OK, b""
        if self.auth_key not in _DATA_ACCESS[bits][1]:
            return TIMEOUT, b""
        self.blocks[block][:] = value
        return OK, b""
