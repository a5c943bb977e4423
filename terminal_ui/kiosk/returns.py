"""Packaging returns: empty pesticide containers brought back by the buyer on
screen, scanned by their label's unit code, committed as one `return` record
with the deposit paid back.

A container is linked to the sale it left the shop in, by its unit code
(unique per pack): the index of sold codes is built from this terminal's
ledger at start and grows with each approved sale (Checkout), so the return
record names the sales its containers came from (`links`). A container of a
product the catalogue no longer knows is still taken back.
"""

from __future__ import annotations

import json
import logging

from firmware import receipt as _receipt
from firmware.counter import Cart
from protocols import labelcode
from terminal_ui import views
from terminal_ui.errors import KioskError

log = logging.getLogger(__name__)


class PackagingReturns:
    """The returns' part of `Kiosk` (terminal_ui/kiosk/session.py holds the state)."""

    def _index_sold_codes(self) -> None:
        """label code -> sale seq from this terminal's ledger, so a returned
        container links to the sale it left the shop in (first sale wins: a
        unit code is unique per pack)."""
        for text in self.agent.ledger.rows():
            record = json.loads(text)
            if record["type"] == "sale":
                for item in record["body"]["items"]:
                    code = item.get("code")
                    if code and item.get("decision", "approve") == "approve":
                        self._sold_codes.setdefault(code, record["seq"])

    def start_return(self, session: str | None = None) -> None:
        with self._lock:
            self._need_sale(session)
            self.cart = Cart()
            self.outcome = None
            self.returned = []
            self.screen = "return"
            self.message = None
        self._changed()

    def scan_return(self, text: str, session: str | None = None) -> dict:
        with self._lock:
            self._need_clerk(session)
            if self.screen != "return":
                raise KioskError("subject_required")
            try:
                parsed = labelcode.parse(text)
                if parsed["kind"] != "unit_code":
                    raise KioskError("return_code_required", parsed.get("code", ""))
                code = parsed["code"]
                if any(r["code"] == code for r in self.returned):
                    raise KioskError("return_duplicate", code)
                name = product = spec = None
                try:
                    hit = labelcode.resolve(parsed, self.counter.index())
                    product, spec = hit["product"], hit["spec"]
                    prod, pack = views.product_of(self.counter, product, spec)
                    name = prod["name"] if prod else product
                except labelcode.LabelError:
                    pass      # an unknown product's container is still taken back
            except (KioskError, labelcode.LabelError) as exc:
                self._message(exc)
                self._changed()
                raise
            entry = {"code": code, "product": product, "spec": spec, "name": name or code,
                     "link": self._sold_codes.get(code), "deposit_fen": self.settings.deposit_fen}
            entry["link_id"] = _receipt.record_id(self.config.terminal, entry["link"]) if entry["link"] else None
            self.returned.append(entry)
            self.message = None
        self._changed()
        return entry

    def cancel_return(self, session: str | None = None) -> None:
        with self._lock:
            self._need_clerk(session)
            self.returned = []
            self.screen = "sale" if self.identity else "idle"
        self._changed()

    def commit_return(self, session: str | None = None) -> dict:
        with self._lock:
            clerk = self._need_clerk(session)
            if self.screen != "return" or self.identity is None:
                raise KioskError("subject_required")
            if not self.returned:
                raise KioskError("return_empty")
            links = sorted({r["link"] for r in self.returned if r["link"]})
            deposit = sum(r["deposit_fen"] for r in self.returned)
            body = {"subject": self.identity.subject, "codes": [r["code"] for r in self.returned],
                    "clerk": clerk.id, "deposit_fen": deposit}
            if links:
                body["links"] = links
            stored = self.agent.record("return", body)
            returned = list(self.returned)
            self.outcome = {"record": "return", "approved": True, "seq": stored.seq, "mode": None,
                            "record_id": _receipt.record_id(self.config.terminal, stored.seq),
                            "links": links, "deposit_fen": deposit, "returned": returned, "items": [],
                            "voided": False}
            self.returned = []
            self.screen = "result"
        log.info("packaging return terminal=%s seq=%d subject=%s containers=%d links=%s", self.config.terminal,
                 stored.seq, body["subject"], len(returned), links)
        self.voice.say("return_done")
        if self.printer is not None:
            doc = _receipt.SaleReceipt(
                shop=self.settings.shop_name or self.config.shop, terminal=self.config.terminal, seq=stored.seq,
                time_ms=self.wall_ms(), clerk=clerk.name, subject_name=(self.subject_view or {}).get("name", "—"),
                subject_id=body["subject"], items=[_receipt.ReceiptItem(r["name"], 1, r["code"]) for r in returned],
                kind="return", deposit_fen=deposit, links=links)
            self._print(doc, stored.seq)
        self._changed()
        return self.outcome
