"""The catalogue as this shop sells it: the product search the clerk picks
from, and the owner's price list and container deposit (the 价格 screen).

Prices are the shop's, not the bureau's: only a clerk marked `owner` may set
them, and a line already in a cart keeps the price it went in at
(firmware/prices.py stores them and keeps their history).
"""

from __future__ import annotations

from firmware import receipt as _receipt
from firmware.prices import PriceError, parse_yuan
from protocols import catalogue as _catalogue


class PriceList:
    """The catalogue's and prices' part of `Kiosk` (terminal_ui/kiosk/session.py holds the state)."""

    def search(self, query: str, limit: int = 20) -> list[dict]:
        """Catalogue products whose name, registration number or EAN contains the
        query; each pack is one choice. Banned products are listed (marked) so the
        clerk learns why one cannot be sold instead of not finding it."""
        query = (query or "").strip().lower()
        data = self.counter.index().data
        date = self.counter.today()
        out = []
        for key in sorted(data["products"]):
            prod = data["products"][key]
            hay = (key + " " + prod.get("name", "") + " " + prod.get("reg_text", "")).lower()
            packs = prod.get("packs", {})
            if query and query not in hay and not any(query in (p.get("ean") or "") for p in packs.values()):
                continue
            status = _catalogue.status_on(data, prod, date)["status"]
            for spec in sorted(packs):
                out.append({"product": key, "spec": spec, "name": prod.get("name", key), "kind": prod.get("kind"),
                            "pack": _receipt.amount_text(packs[spec]["net"], packs[spec]["unit"]), "status": status,
                            "fen": self.agent.prices.price(key, spec)})
                if len(out) >= limit:
                    return out
        return out

    def price_list(self, query: str = "", limit: int = 50) -> dict:
        """The 价格 screen: catalogue packs with the shop's price, and the deposit."""
        return {"products": self.search(query, limit), "deposit_fen": self.agent.prices.deposit_fen(),
                "changes": self.agent.prices.changes(20)}

    def set_price(self, product: str, spec: str, yuan: str | None, session: str | None = None) -> int | None:
        """The owner sets (or, with None, removes) one pack's price; lines
        already in a cart keep the price they went in at. Returns what is
        stored, in fen."""
        with self._lock:
            clerk = self._need_owner(session)
            if _catalogue.pack(self.counter.index().data, product, spec)[0] is None:
                raise PriceError("price_unknown_product", "%s/%s" % (product, spec))
            fen = None if yuan is None else parse_yuan(yuan)
            if fen is None:
                self.agent.prices.remove(product, spec, clerk.id, self.wall_ms())
            else:
                self.agent.prices.set(product, spec, fen, clerk.id, self.wall_ms())
        self._changed()
        return fen

    def set_deposit(self, yuan: str, session: str | None = None) -> int:
        with self._lock:
            clerk = self._need_owner(session)
            fen = parse_yuan(yuan)
            self.agent.prices.set_deposit(fen, clerk.id, self.wall_ms())
        self._changed()
        return fen
