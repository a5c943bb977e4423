"""The shop's own price list: what each pack costs at this counter, and the
packaging deposit charged per pesticide container.

Prices are the shop's business, not the district's: the owner sets them on the
terminal (the kiosk's 价格 screen, or `python -m firmware prices`), and nothing
from the gateway overwrites them. They live in their own SQLite file beside
the ledger, apart from the synced config (which the gateway may replace) and
from the ledger (which only ever grows): a price change is not a sale. Every
change is kept in `price_changes` with who made it and when, so the owner can
answer "who changed the price of this on Tuesday".

A sale copies the prices it was made at into its record (`price_fen` per line,
`deposit_fen`, `total_fen`; docs/protocol.md), so a later change never alters
what the ledger says a past sale cost.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from firmware.files import private_sqlite_file
from protocols import reasons

MAX_FEN = 10_000_000          # 100,000 yuan a pack: beyond that it is a typo
DEPOSIT = "deposit"           # the product key of the deposit row in price_changes

SCHEMA = """
CREATE TABLE IF NOT EXISTS prices (
    product     TEXT NOT NULL,
    spec        TEXT NOT NULL,
    fen         INTEGER NOT NULL CHECK (fen >= 0),
    PRIMARY KEY (product, spec)
);
CREATE TABLE IF NOT EXISTS settings (
    name        TEXT PRIMARY KEY,
    value       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS price_changes (
    id          INTEGER PRIMARY KEY,
    product     TEXT NOT NULL,
    spec        TEXT NOT NULL,
    fen         INTEGER,            -- NULL: the price was removed
    by          TEXT NOT NULL,
    time_ms     INTEGER NOT NULL
);
"""


reasons.register({
    "price_invalid": ("价格不对：请输入 0 到 100000 元之间的金额，最多两位小数",
                      "Invalid price: enter an amount from 0 to 100,000 yuan, at most two decimals"),
    "price_unknown_product": ("目录中没有这个产品规格，不能定价", "No such product and pack in the catalogue: cannot price it"),
})


def beside(ledger_path: Path) -> Path:
    """Where a terminal keeps its price list: `<ledger stem>.prices.db`."""
    ledger_path = Path(ledger_path)
    return ledger_path.with_name(ledger_path.stem + ".prices.db")


class PriceError(reasons.ReasonError):
    """A price that must not be stored; `code` says why."""


@dataclass(frozen=True)
class Charge:
    """What a sale costs: each approved line's price (None where the shop set
    none), the deposit and the total the buyer pays."""
    lines: tuple[int | None, ...]
    deposit_fen: int
    total_fen: int
    unpriced: int               # approved lines without a price

    @property
    def priced(self) -> bool:
        """Whether there is a bill at all: a shop that set no prices and no
        deposit records and prints no money."""
        return self.deposit_fen > 0 or any(fen is not None for fen in self.lines)

    def as_dict(self) -> dict:
        return {"lines": list(self.lines), "deposit_fen": self.deposit_fen, "total_fen": self.total_fen,
                "unpriced": self.unpriced}


def parse_yuan(text: str) -> int:
    """'12.5' or '12.50' yuan as fen; refuses what a clerk cannot have meant."""
    text = str(text).strip().replace("元", "").replace("¥", "").strip()
    whole, _, cents = text.partition(".")
    if not whole.isdigit() or (cents and (not cents.isdigit() or len(cents) > 2)):
        raise PriceError("price_invalid", repr(text))
    fen = int(whole) * 100 + int((cents + "00")[:2])
    return _check_fen(fen)


def _check_fen(fen) -> int:
    if not isinstance(fen, int) or isinstance(fen, bool) or not 0 <= fen <= MAX_FEN:
        raise PriceError("price_invalid", repr(fen))
    return fen


class PriceList:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        private_sqlite_file(self.path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def price(self, product: str, spec: str) -> int | None:
        row = self._db.execute("SELECT fen FROM prices WHERE product = ? AND spec = ?", (product, spec)).fetchone()
        return row[0] if row else None

    def deposit_fen(self) -> int:
        row = self._db.execute("SELECT value FROM settings WHERE name = ?", (DEPOSIT,)).fetchone()
        return row[0] if row else 0

    def all(self) -> list[dict]:
        return [{"product": p, "spec": s, "fen": fen}
                for p, s, fen in self._db.execute("SELECT product, spec, fen FROM prices ORDER BY product, spec")]

    def changes(self, limit: int = 100) -> list[dict]:
        rows = self._db.execute("SELECT product, spec, fen, by, time_ms FROM price_changes ORDER BY id DESC LIMIT ?",
                                (limit,))
        return [{"product": p, "spec": s, "fen": fen, "by": by, "time_ms": t} for p, s, fen, by, t in rows]

    def set(self, product: str, spec: str, fen: int, by: str, time_ms: int) -> None:
        """Set one pack's price; `by` is the clerk id (kept in price_changes)."""
        fen = _check_fen(fen)
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO prices (product, spec, fen) VALUES (?, ?, ?) "
                             "ON CONFLICT (product, spec) DO UPDATE SET fen = excluded.fen", (product, spec, fen))
            self._log(product, spec, fen, by, time_ms)

    def remove(self, product: str, spec: str, by: str, time_ms: int) -> bool:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            gone = self._db.execute("DELETE FROM prices WHERE product = ? AND spec = ?", (product, spec)).rowcount
            if gone:
                self._log(product, spec, None, by, time_ms)
        return bool(gone)

    def set_deposit(self, fen: int, by: str, time_ms: int) -> None:
        fen = _check_fen(fen)
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO settings (name, value) VALUES (?, ?) "
                             "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (DEPOSIT, fen))
            self._log(DEPOSIT, "", fen, by, time_ms)

    def _log(self, product: str, spec: str, fen: int | None, by: str, time_ms: int) -> None:
        self._db.execute("INSERT INTO price_changes (product, spec, fen, by, time_ms) VALUES (?, ?, ?, ?, ?)",
                         (product, spec, fen, by, time_ms))


def charge(lines: list[tuple[int | None, int, bool, bool]], deposit_per_pack: int) -> Charge:
    """The bill for `lines` of (unit price or None, packs, approved, is a
    pesticide): refused lines cost nothing; each approved pesticide pack
    carries the deposit, paid back when its container is returned."""
    prices, deposit, unpriced = [], 0, 0
    for unit_fen, packs, approved, pesticide in lines:
        if not approved:
            prices.append(None)
            continue
        if unit_fen is None:
            unpriced += 1
        prices.append(None if unit_fen is None else unit_fen * packs)
        if pesticide:
            deposit += deposit_per_pack * packs
    return Charge(tuple(prices), deposit, sum(p for p in prices if p is not None) + deposit, unpriced)
