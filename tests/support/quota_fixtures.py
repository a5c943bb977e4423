"""Shared data for the quota, authorization and config sync tests: subjects,
test policy params, shops, and products picked by their status *today*, so the
tests keep meaning the same thing as the catalogue's dated bans take effect."""

from __future__ import annotations

import copy
import json
import sqlite3
import time
from pathlib import Path

from protocols import authz, catalogue

TOWN = "330113001"
OTHER_TOWN = "330113002"
UREA = ("XK13-001-00101", "002")        # 50 kg bag, 46% N: 23000 g N per bag
UREA_N_PER_BAG = 23000


def today() -> str:
    return authz.local_date(int(time.time() * 1000))


def params() -> dict:
    """The shipped params with an offline allowance the tests can reach:
    70 % of the cached remaining, at most 80 kg N per offline sale."""
    data = json.loads((Path(catalogue.default_path()).parent / "policy_params.json").read_text("utf-8"))
    data = copy.deepcopy(data)
    data["version"] = 7
    data["offline"]["fraction_pct"] = 70
    data["offline"]["cap"]["fert_n"] = 80000
    return data


def product_with_status(status: str, designated: bool | None = None) -> tuple[str, str]:
    data = catalogue.load()
    date = today()
    for key in sorted(data["products"]):
        prod = data["products"][key]
        state = catalogue.status_on(data, prod, date)
        if state["status"] == status and (designated is None or state["designated"] == designated):
            return key, sorted(prod["packs"])[0]
    raise LookupError(f"no {status} product in the catalogue today")


def subjects(names_mu: dict[str, int], town: str = TOWN) -> list[dict]:
    """Active subjects growing rice on the given mu."""
    return [{"id": name, "status": "active", "town": town, "name": "测试" + name,
             "plots": [{"id": "P1", "crop": "rice", "area_cmu": mu * 100}]} for name, mu in names_mu.items()]


def write_jsonl(path: Path, entries: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries), "utf-8")
    return path


def add_shops(db: Path, shops: dict[str, tuple[str, bool]]) -> None:
    """Shops (id -> (town, designated)) in the supervision grid's table (the
    gateway's store makes it)."""
    from gateway import store
    conn = store.connect(db)
    try:
        with store.transaction(conn):
            for shop, (town, designated) in shops.items():
                conn.execute("INSERT INTO shops(id, name, town, designated) VALUES (?, ?, ?, ?) ON CONFLICT(id) "
                             "DO UPDATE SET name = excluded.name, town = excluded.town, "
                             "designated = excluded.designated", [shop, shop, town, int(designated)])
    finally:
        conn.close()


# ---------------------------------------------------------------- subject cards (identity proof)

REGISTRY_SEED = bytes(range(101, 133))   # the test registry's Ed25519 seed: signs the cards tests show


def registry_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    return Ed25519PrivateKey.from_private_bytes(REGISTRY_SEED)


def registry_public_hex() -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    return registry_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def issue_card(subject: str, card_no: str | None = None, uid: bytes | None = None, issued: str = "2020-01-01",
               expires: str = "2099-12-31", key=None) -> tuple[bytes, bytes]:
    """(payload, uid) of a subject card signed by the test registry (or `key`),
    as a reader reads it; the UID is derived from the card number."""
    import hashlib
    from protocols import card
    card_no = card_no or "C-" + subject
    uid = uid or b"\x04" + hashlib.sha256(card_no.encode()).digest()[:6]
    issued_card = card.Card(uid, subject, card_no, "330113", issued, expires)
    return card.issue(issued_card, key or registry_key()), uid


def card_identity(subject: str, card_no: str | None = None):
    """A card identity as `Counter.read_card` returns it, with the card's
    payload and UID as its proof, for tests that skip the reader."""
    from firmware.counter import Identity
    from protocols import authz
    card_no = card_no or "C-" + subject
    payload, uid = issue_card(subject, card_no)
    return Identity(subject, "card", card_no, {"card": authz.card_proof(payload, uid)})
