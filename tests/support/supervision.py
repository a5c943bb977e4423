"""A small grid (one district, two towns, three villages, four shops) and signed
records with chosen bodies, for the supervision tests."""

from __future__ import annotations

from protocols import envelope

KEY = bytes(range(32))
DISTRICT, TOWN1, TOWN2 = "330113", "330113001", "330113002"
VILLAGE1, VILLAGE2, VILLAGE3 = "330113001001", "330113001002", "330113002001"

GRID = {
    "areas": [
        {"code": DISTRICT, "level": "district", "name": "临平区"},
        {"code": TOWN1, "level": "town", "name": "临平街道", "parent": DISTRICT},
        {"code": TOWN2, "level": "town", "name": "塘栖镇", "parent": DISTRICT},
        {"code": VILLAGE1, "level": "village", "name": "东湖村", "parent": TOWN1},
        {"code": VILLAGE2, "level": "village", "name": "西湖村", "parent": TOWN1},
        {"code": VILLAGE3, "level": "village", "name": "塘栖村", "parent": TOWN2},
    ],
    "shops": [
        {"id": "SHOP1", "name": "东湖农资店", "village": VILLAGE1, "designated": True, "hours": "07:00-19:00",
         "lat": 30.420, "lon": 120.300},
        {"id": "SHOP2", "name": "西湖农资店", "village": VILLAGE2, "designated": False, "hours": "07:00-19:00",
         "lat": 30.425, "lon": 120.310},
        {"id": "SHOP3", "name": "塘栖农资店", "village": VILLAGE3, "designated": False, "hours": "",
         "lat": 30.600, "lon": 120.200},
        {"id": "SHOP4", "name": "塘栖二店", "village": VILLAGE3, "designated": False, "hours": "",
         "lat": 30.601, "lon": 120.201},
    ],
}

TERMINAL_SHOPS = {"TA": "SHOP1", "TB": "SHOP2", "TC": "SHOP3", "TD": "SHOP4"}


class Chain:
    """A terminal's ledger as the envelope code writes it, one record at a time."""

    def __init__(self, terminal: str, key: bytes = KEY):
        self.terminal, self.key = terminal, key
        self.seq, self.prev = 0, envelope.GENESIS

    def add(self, rtype: str, body: dict, time_ms: int) -> dict:
        self.seq += 1
        record = envelope.make_record(self.key, self.terminal, self.seq, self.prev, time_ms, rtype, body)
        self.prev = envelope.digest(record)
        return record

    def batch(self, records: list[dict]) -> bytes:
        return envelope.encode_batch(self.terminal, records[0]["seq"] - 1, [envelope.stored_text(r) for r in records])


def sale_body(subject="S00001", product="PD20080101", packs=1, identity="card", card="CARD1", spec=None,
              **extra) -> dict:
    item = {"product": product, "packs": packs}
    if spec:
        item["spec"] = spec
    body = {"subject": subject, "items": [item], "identity": identity,
            "mode": "online", "clerk": "c1"}
    if card:
        body["card"] = card
    body.update(extra)
    return body
