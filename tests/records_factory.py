"""Signed records for tests, made by the real envelope code."""

from protocols import envelope

KEY = bytes(range(32))
T0 = 1764300000000


def sale(n: int) -> dict:
    return {"subject": f"S{n:05d}", "items": [{"product": "PD20080001", "packs": 1 + n % 3}],
            "identity": "card", "mode": "online", "clerk": "c1", "sale_id": f"x-{n}"}


def chain(terminal: str, count: int, key: bytes = KEY, start_prev: str = envelope.GENESIS, first: int = 1) -> list[dict]:
    out, prev = [], start_prev
    for seq in range(first, first + count):
        record = envelope.make_record(key, terminal, seq, prev, T0 + seq, "sale", sale(seq))
        prev = envelope.digest(record)
        out.append(record)
    return out


def batch(terminal: str, after: int, records: list[dict]) -> bytes:
    return envelope.encode_batch(terminal, after, [envelope.stored_text(r) for r in records])
