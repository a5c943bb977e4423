"""The shop's ledger for people: pages for the screen, the CSV export and the
PDF for an inspector, built row by row from the terminal's SQLite ledger so a
two-year ledger never sits in memory."""

from __future__ import annotations

import csv
import io
import json
import threading

from firmware import ledger_pdf as _ledger_pdf
from terminal_ui.views import row_view


class LedgerExports:
    def __init__(self, agent, counter, config, settings, wall_ms):
        self.agent, self.counter, self.config, self.settings, self.wall_ms = agent, counter, config, settings, wall_ms
        self._pdf_lock = threading.Lock()         # one PDF export at a time: it is CPU work on a Pi

    def _row_view(self, record: dict) -> dict:
        return row_view(self.counter, record, self.agent.ledger.acked, {c.id: c.name for c in self.settings.clerks})

    def rows(self, before: int | None = None, limit: int = 50) -> dict:
        """Newest first, `limit` rows below seq `before` (paging for the screen)."""
        ledger = self.agent.ledger
        head = ledger.head
        top = min(head, before - 1) if before else head
        after = max(0, top - limit)
        rows = [self._row_view(json.loads(text)) for _, text in ledger.pending(after, top - after)]
        rows.reverse()
        return {"rows": rows, "head": head, "acked": ledger.acked, "next": after if after > 0 else None}

    def csv(self):
        """The whole ledger as CSV lines (UTF-8 with BOM so Excel opens the Chinese
        right), produced row by row: a two-year ledger never sits in memory. The
        headings and values are the PDF's (firmware/ledger_pdf.py `cells`): record
        numbers, types, modes, reasons and deposits in Chinese words, the
        clerk's name; a cell's several entries joined by "；" (one row a record)."""
        yield "\ufeff"
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow([zh for _, zh, _ in _ledger_pdf.COLUMNS])
        yield buf.getvalue()
        after = 0
        while True:
            chunk = self.agent.ledger.pending(after, 500)
            if not chunk:
                return
            buf = io.StringIO()
            writer = csv.writer(buf)
            for seq, text in chunk:
                cells = _ledger_pdf.cells(self._row_view(json.loads(text)), self.config.terminal)
                writer.writerow([cell.replace("\n", "；") for cell in cells])
                after = seq
            yield buf.getvalue()

    def pdf(self) -> bytes:
        """The ledger as a PDF for an inspector (firmware/ledger_pdf.py): the
        CSV's rows, read 500 at a time, up to the head at the moment of the
        request, so the range in the title and the table agree while sales go on.
        A second export while one is being built is refused, not queued."""
        if not self._pdf_lock.acquire(blocking=False):
            raise _ledger_pdf.LedgerPdfError("ledger_pdf_busy")
        try:
            ledger = self.agent.ledger
            last = ledger.head
            first = ledger.pending(0, 1)
            first_seq = first[0][0] if first and first[0][0] <= last else None
            header = _ledger_pdf.Header(
                shop_name=self.settings.shop_name, shop=self.config.shop, terminal=self.config.terminal,
                exported_ms=self.wall_ms(), first_seq=first_seq, last_seq=last if first_seq else None)
            return _ledger_pdf.render(header, self._ledger_views(last))
        finally:
            self._pdf_lock.release()

    def _ledger_views(self, upto: int):
        """Row views of seq 1..upto in order, one chunk of 500 in memory at a time."""
        after = 0
        while after < upto:
            chunk = self.agent.ledger.pending(after, 500)
            if not chunk:
                return
            for seq, text in chunk:
                if seq > upto:
                    return
                yield self._row_view(json.loads(text))
                after = seq
