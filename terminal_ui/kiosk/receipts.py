"""Receipts on the ESC/POS printer: one for each approved sale and each
packaging return, and a reprint of the last one.

Printing runs on its own thread and never holds up the counter: the record
is already committed when a receipt is printed, so a printer out of paper
or unplugged is shown (`receipt` state "failed", the status bar's printer)
and the clerk can reprint, but the sale stands. The layout itself is pure
(firmware/receipt.py: facts in, bytes out).
"""

from __future__ import annotations

import logging

from firmware import receipt as _receipt
from firmware.counter import Cart, Identity, Outcome
from firmware.devices import PrinterError
from protocols import policy, reasons
from terminal_ui import views
from terminal_ui.errors import KioskError, error_view

log = logging.getLogger(__name__)


class Receipts:
    """The printer's part of `Kiosk` (terminal_ui/kiosk/session.py holds the state)."""

    def _print_sale(self, outcome: Outcome, cart: Cart, identity: Identity) -> None:
        if self.printer is None:
            return
        params = self.agent.config_store.params()
        items = []
        bill = outcome.charge
        for i, (line, verdict) in enumerate(zip(cart.lines, outcome.items)):
            prod, pack = views.product_of(self.counter, line.product, line.spec)
            approved = verdict["decision"] == policy.APPROVE
            items.append(_receipt.ReceiptItem(
                prod["name"] if prod else line.product, line.packs,
                _receipt.amount_text(pack["net"], pack["unit"]) + "/件" if pack else "",
                approved, "" if approved else "；".join(reasons.text(c) for c in verdict.get("reasons") or []),
                bill.lines[i] if bill else None))
        remaining = [(_receipt.category_name(c), _receipt.amount_text(v, _receipt.category_unit(c, params)))
                     for c, v in sorted((outcome.remaining or {}).items())
                     if c in (outcome.consumption or {})]
        doc = _receipt.SaleReceipt(
            shop=self.settings.shop_name or self.config.shop, terminal=self.config.terminal, seq=outcome.seq,
            time_ms=self.wall_ms(), clerk=self.clerk.name if self.clerk else "", subject_name=(self.subject_view or {}).get("name", "—"),
            subject_id=identity.subject, items=items, mode=outcome.mode, remaining=remaining,
            deposit_fen=bill.deposit_fen if bill else 0,
            total_fen=bill.total_fen if bill and bill.priced else None)
        self._print(doc, outcome.seq)

    def _print(self, doc: _receipt.SaleReceipt, seq: int) -> None:
        data = _receipt.render(doc, self.settings.printer_columns)
        with self._lock:
            self.receipt_state = {"seq": seq, "state": "printing"}

        def job():
            try:
                self.printer.print(data)
                state = {"seq": seq, "state": "printed"}
                self.printer_state = "ok"
            except PrinterError as exc:
                log.warning("receipt not printed seq=%d: %s", seq, exc)
                state = dict({"seq": seq, "state": "failed"}, **error_view(exc))
                self.printer_state = "error"
            with self._lock:
                if self.receipt_state and self.receipt_state.get("seq") == seq:
                    self.receipt_state = state
            self._changed()

        self._spawn(job, "receipt-%d" % seq)
        self._last_receipt = (doc, seq)

    def reprint(self, session: str | None = None) -> None:
        with self._lock:
            self._need_clerk(session)
        last = self._last_receipt
        if self.printer is None or last is None:
            raise KioskError("nothing_to_void", "no receipt")
        self._print(*last)
