"""One sale at the card-only counter: card, cart, decision, ledger, signal.

  online first: an authorization request to the gateway (protocols/authz.py),
      answered within `deadline_ms` (1500 by default, the Pi terminal's);
  then offline: the same `protocols.policy.decide` against the synced
      catalogue, params, shop and subject entry, and the subject's balance as
      the gateway last sent it (balances section, or the last online answer)
      plus this terminal's own offline sales above the figures' `acked`,
      read from the ledger itself, so each counts exactly once;
  and always: a `sale` (approved or partial) or a `refusal` record committed to
      the flash ledger before the result is shown, printed and signalled.

A card that is not accepted (unknown, tampered, copied, revoked, expired, not
readable) is a refusal too, recorded with its reason and no subject: the legal
ledger keeps refused attempts. Only a full flash records nothing
(`ledger_disk_full`).
"""

import json
import random
import time

from protocols import authz, catalogue as _catalogue, envelope, pn532host, policy, reasons, topics
from protocols.card import CardRejected, trust_store

from ledger import LedgerFull

reasons.register({
    "cart_line_invalid": ("购物清单中的这一行不对", "This cart line is not valid"),   # as firmware/counter.py
    "card_not_presented": ("未检测到卡，请重新刷卡", "no card on the reader, tap again"),
    # as firmware/counter.py and terminal_ui/errors.py, the Pi counter's words for the same refusals
    "sale_not_found": ("台账中查无此笔销售，无法作废", "No such sale in the ledger: nothing to void"),
    "sale_already_voided": ("这笔销售已作废", "This sale was already voided"),
    "return_empty": ("还没有扫描回收的包装", "No returned containers scanned yet"),
    "return_duplicate": ("该包装已扫描", "This container was already scanned"),
    "return_code_required": ("回收包装须扫描标签上的二维码", "Scan the QR code on the returned container's label"),
})


class Counter:
    def __init__(self, terminal, key, ledger, store, session, reader, board, wall_ms, settings, log=None):
        self.terminal = terminal
        self._key = key
        self.ledger = ledger
        self.store = store
        self.session = session
        self.reader = reader
        self.board = board
        self.wall_ms = wall_ms
        self.deadline_ms = settings.get("deadline_ms", authz.DEFAULT_DEADLINE_MS)
        self.card_timeout_ms = settings.get("card_timeout_ms", 3000)
        self.clerk = settings.get("clerk", "clerk")
        self.deposit_fen = settings.get("deposit_fen", 50)   # per container, as the kiosk's default
        self.trusted = trust_store([bytes.fromhex(k) for k in settings.get("registry_keys", [])])
        self._log = log or (lambda *a: None)
        self._pending = {}          # correlation id -> response
        self._learned = {}          # subject -> (rev, acked, used) from online answers
        self._subjects = {}         # subject entries from online answers (buyers from elsewhere)
        self._resp_topic = topics.topic(terminal, topics.AUTH_RESP)
        self._req_topic = topics.topic(terminal, topics.AUTH_REQ)
        session.subscribe(self._resp_topic, self.on_response)
        self.last_tap_ms = None     # card on the field to verified subject id
        self.last_uid = None        # the UID of the card read last (tap.py: lying there, it is no new tap)

    def today(self):
        return authz.local_date(self.wall_ms())

    # -- the sale

    def sell(self, card_uid, items, card_file=None):
        """(True, seq) or (False, reason code); the record is on flash before it returns."""
        cart = None
        try:
            cart = self._cart(items)
            found, payload, uid = self._tap(card_file)
        except CardRejected as err:
            return self._refuse(cart or self._lines(items), err.code)
        except ValueError as err:
            return self._refuse(self._lines(items), str(err) if reasons.known(str(err)) else "cart_line_invalid")
        subject = found.subject_id
        proof = {"card": authz.card_proof(payload, uid)}
        sale_id = "%s-%x%04x" % (self.terminal[:40], self.wall_ms(), random.getrandbits(16))
        response = self._authorize(sale_id, subject, found.card_no, cart, proof)
        auth_id = None
        if response is not None and response["status"] == authz.OK:
            decision = response["decision"]
            auth_id = response.get("auth")
            self._learn(response)
        else:
            decision = self.decide_offline(subject, cart)
        return self._record(subject, found.card_no, cart, proof, sale_id, decision, auth_id)

    def _lines(self, items):
        out = []
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("product"), str) and item.get("product"):
                packs = item.get("packs")
                out.append({"product": item["product"][:64], "spec": str(item.get("spec") or "")[:32],
                            "packs": packs if type(packs) is int and 0 < packs <= 100000 else 1})
        return out

    def _cart(self, items):
        """The policy's cart: each line's pack spec from the catalogue when the
        sale names none (a card-only counter sells by product), or product and
        spec from a scanned label code (`code`: the QR's text or an EAN-13, as
        the UART scanner reads it), resolved as the Pi counter does."""
        if not isinstance(items, list) or not 0 < len(items) <= 100:
            raise ValueError("cart_line_invalid")
        items = [self._scanned(item) for item in items]
        wanted = [item.get("product") for item in items if isinstance(item, dict)]
        data = self.store.catalogue_for(wanted) or _shipped_catalogue()
        cart = []
        for item in items:
            if not isinstance(item, dict):
                raise ValueError("cart_line_invalid")
            product, packs, spec = item.get("product"), item.get("packs", 1), item.get("spec")
            if not isinstance(product, str) or type(packs) is not int or not 0 < packs <= 100000:
                raise ValueError("cart_line_invalid")
            entry = data["products"].get(product)
            if entry is None:
                raise ValueError("unknown_product")
            if spec is None:
                spec = sorted(entry["packs"])[0]
            if spec not in entry["packs"]:
                raise ValueError("unknown_product")
            line = {"product": product, "spec": spec, "packs": packs}
            if item.get("code"):
                line["code"] = item["code"]
            cart.append(line)
        return cart

    def _scanned(self, item):
        """An item with a scanned `code` as {"product", "spec", "packs", "code"};
        others as they are. An unreadable or unknown code raises ValueError with
        the labelcode reason (labelcode_length, unknown_product, ...)."""
        if not isinstance(item, dict) or "code" not in item or "product" in item:
            return item
        from protocols import labelcode   # only for scans: 6.5 KB of heap a menu-only board never spends
        try:
            parsed = labelcode.parse(item["code"])
            index = _catalogue.Index(self.store.scan_candidates(parsed) or _shipped_catalogue())
            hit = labelcode.resolve(parsed, index)
        except labelcode.LabelError as err:
            raise ValueError(err.code)
        return {"product": hit["product"], "spec": hit["spec"], "packs": item.get("packs", 1),
                "code": hit["code"][:128]}

    def _tap(self, card_file):
        """The card on the reader, verified: (card, payload, uid)."""
        field = self.board.field
        if field is not None and card_file is not None:
            try:
                field.put(card_file)
            except OSError as err:   # the emulator (the farmer's hand) is not there
                raise CardRejected("card_reader_error", "pn532 field: %s" % err)
        try:
            started = self._ticks()
            try:
                target = self.reader.wait_for_target(self.card_timeout_ms)
            except Exception as err:   # the reader itself failed all along
                raise CardRejected("card_reader_error", str(err))
            if target is None:
                raise CardRejected("card_not_presented")
            self.last_uid = target.uid
            found, payload = pn532host.read_and_verify(self.reader, target, self.trusted, self.today(),
                                                       self.store.revoked())
            self.last_tap_ms = self._ticks() - started
            return found, payload, target.uid
        finally:
            if field is not None and card_file is not None:
                try:
                    field.remove()
                except OSError:
                    pass

    def _ticks(self):
        return time.ticks_ms()

    # -- online

    def on_response(self, payload):
        try:
            response = authz.decode_response(payload, self._key)
        except authz.Invalid as err:
            self._log("authorization response refused: %s" % err.code)
            return
        if response["terminal"] == self.terminal and response["id"] == self._awaiting:
            self._pending[response["id"]] = response
        # else: a late answer to a request already decided offline; the gateway
        # matches it to that sale's record by sale_id, nothing to do here

    _awaiting = None

    def _authorize(self, sale_id, subject, card_no, cart, proof):
        if not self.session.connected:
            return None
        request_id = "%08x%08x" % (random.getrandbits(32), random.getrandbits(32))
        payload = authz.encode_request(self._key, self.terminal, request_id, sale_id, self.wall_ms(), subject,
                                       "card", cart, card=card_no, clerk=self.clerk, proof=proof)
        deadline = time.ticks_add(time.ticks_ms(), self.deadline_ms)
        self._pending = {}
        self._awaiting = request_id
        try:
            return self._await(request_id, sale_id, payload, deadline)
        finally:
            self._awaiting = None
            self._pending = {}

    def _await(self, request_id, sale_id, payload, deadline):
        if not self.session.publish(self._req_topic, payload):
            return None
        while time.ticks_diff(deadline, time.ticks_ms()) > 0:
            self.session.poll()
            if request_id in self._pending:
                response = self._pending.pop(request_id)
                if response["sale_id"] == sale_id:
                    return response
                # a genuine answer, but about another sale: it must not decide this one
                self._log("authorization answer for another sale ignored sale=%s" % response["sale_id"])
            if not self.session.connected:
                return None
            time.sleep_ms(5)
        self._log("authorization timed out sale=%s" % sale_id)
        return None

    def _learn(self, response):
        subject = response.get("subject")
        if subject:
            self._subjects[subject["id"]] = subject
            if "used" in response and "rev" in response:
                self._learned[subject["id"]] = (response["rev"], response.get("acked", 0), response["used"])

    # -- offline

    def subject(self, subject_id):
        """The synced registry entry (read off the subjects index, a line at
        a time: a town's section does not fit the heap whole), else the one
        an online answer brought."""
        entry = self.store.subject_entry(subject_id)
        if entry is not None:
            return entry
        return self._subjects.get(subject_id)

    def used(self, subject_id, params):
        """The gateway's figures for the subject, plus this terminal's offline
        sales and its voids (negative) that the figures do not include yet
        (ledger seqs above their acked). An online sale is in the figures from
        its authorization on, so its void alone gives it back here."""
        rev, acked, used = -1, 0, {}
        stored = self.store.balance(subject_id)
        if stored is not None:
            rev, acked, used = stored
        learned = self._learned.get(subject_id)
        if learned is not None and learned[0] >= rev:
            rev, acked, used = learned
        used = json.loads(json.dumps(used))   # a copy: the local sales are added to it
        after = acked
        while True:
            rows = self.ledger.pending(after, 16)
            if not rows:
                break
            for seq, text in rows:
                after = seq
                void = '"type":"void"' in text
                if not void and ('"mode":"offline"' not in text or '"type":"sale"' not in text):
                    continue
                record = json.loads(text)
                body = record["body"]
                if body.get("subject") != subject_id or "consumption" not in body:
                    continue
                # a void gives back in the periods its sale took from (as the gateway's quota_sales)
                when = self._record_time(body["voids"]) if record["type"] == "void" else record["time"]
                if when is None:
                    continue
                date = authz.local_date(when)
                for category in body.get("consumption", {}):
                    if category in params.get("categories", {}):
                        period = policy.period_of(params, category, date)
                    else:
                        period = date[:4]
                    per = used.setdefault(category, {})
                    per[period] = per.get(period, 0) + body["consumption"][category]
        return used

    def decide_offline(self, subject_id, cart):
        date = self.today()
        params = self.store.section("params")
        data = self.store.catalogue_for([line["product"] for line in cart])
        if params is None or data is None:
            return authz.refusal("offline", date, cart, "offline_no_config")
        subject = self.subject(subject_id)
        if subject is None:
            return authz.refusal("offline", date, cart, "offline_subject_unknown")
        inputs = {"date": date, "mode": "offline", "identity": "card", "subject": subject,
                  "shop": self.store.section("shop") or {"id": self.terminal, "designated": False},
                  "cart": [{"product": l["product"], "spec": l["spec"], "packs": l["packs"]} for l in cart],
                  "balances": self.used(subject_id, params), "catalogue": data, "params": params}
        try:
            return authz.wire_decision(policy.decide(inputs))
        except policy.PolicyError as err:
            return authz.refusal("offline", date, cart, err.code)

    # -- voids and packaging returns (the Pi counter's records: firmware/counter.py, the kiosk)

    def void(self, seq, reason="clerk_void"):
        """(True, void seq) once the void is on flash, or (False, reason) with
        nothing recorded. Only a sale of this ledger, and only once: the
        gateway gives nothing back for a second void, and here it would give
        the quota back twice."""
        sale = self._stored(seq) if type(seq) is int and seq > 0 else None
        if sale is None or sale["type"] != "sale":
            return self._not_done("sale_not_found")
        if self._voided(seq):
            return self._not_done("sale_already_voided")
        body = sale["body"]
        void = {"voids": seq, "reason": reason, "clerk": self.clerk, "subject": body["subject"]}
        consumption = body.get("consumption") or {}
        if consumption:
            void["consumption"] = {category: -consumption[category] for category in consumption}
        if body.get("auth"):
            void["auth"] = body["auth"]
        try:
            done = self.ledger.append("void", void, self.wall_ms())
        except (LedgerFull, envelope.Invalid) as err:
            return self._not_done(err.code)
        self.board.display.show(["已作废 VOIDED", "#%d" % seq])
        self.board.signal(True)
        return True, done

    def take_back(self, card_uid, codes, card_file=None):
        """Empty pesticide containers brought back (包装回收): each by the unit
        code on its label, the buyer by card, `deposit_fen` paid per container.
        (True, seq) or (False, reason) with nothing recorded: a container that
        is not a label unit code, or twice in the list, is the clerk's to scan
        again, as on the kiosk."""
        if not isinstance(codes, list) or not codes:
            return self._not_done("return_empty")
        from protocols import labelcode
        taken = []
        for text in codes[:500]:
            try:
                parsed = labelcode.parse(text if isinstance(text, str) else "")
            except labelcode.LabelError as err:
                return self._not_done(err.code)
            if parsed["kind"] != "unit_code":
                return self._not_done("return_code_required")
            if parsed["code"] in taken:
                return self._not_done("return_duplicate")
            taken.append(parsed["code"])
        try:
            found, _, _ = self._tap(card_file)
        except CardRejected as err:
            return self._not_done(err.code)
        body = {"subject": found.subject_id, "codes": taken, "clerk": self.clerk,
                "deposit_fen": self.deposit_fen * len(taken)}
        links = self._sold_with(taken)
        if links:
            body["links"] = links
        try:
            done = self.ledger.append("return", body, self.wall_ms())
        except (LedgerFull, envelope.Invalid) as err:
            return self._not_done(err.code)
        self.board.display.show(["已回收 RETURNED", "%d x #%d" % (len(taken), done)])
        self.board.signal(True)
        return True, done

    def _stored(self, seq):
        rows = self.ledger.pending(seq - 1, 1)
        return json.loads(rows[0][1]) if rows and rows[0][0] == seq else None

    def _record_time(self, seq):
        record = self._stored(seq)
        return record["time"] if record is not None else None

    def _later(self, after, marker):
        """Records above `after` whose stored text holds `marker`, parsed one
        at a time (the ledger streams from flash; only candidates are parsed)."""
        while True:
            rows = self.ledger.pending(after, 16)
            if not rows:
                return
            for seq, text in rows:
                after = seq
                if marker in text:
                    yield json.loads(text)

    def _voided(self, seq):
        for record in self._later(seq, '"type":"void"'):
            if record["type"] == "void" and record["body"]["voids"] == seq:
                return True
        return False

    def _sold_with(self, codes):
        """Seqs of the sales whose scanned label codes come back (the return's links)."""
        links = []
        for record in self._later(0, '"code"'):
            if record["type"] == "sale":
                for item in record["body"]["items"]:
                    if item.get("code") in codes and record["seq"] not in links:
                        links.append(record["seq"])
        return links

    def _not_done(self, code):
        self.board.display.show(["未完成 NOT DONE", reasons.text(code)[:16]] + _two_lines(reasons.text(code, "en")))
        self.board.signal(False)
        return False, code

    # -- recording

    def _record(self, subject, card_no, cart, proof, sale_id, decision, auth_id):
        items = []
        for line, verdict in zip(cart, decision["items"]):
            item = {"product": line["product"], "spec": line["spec"], "packs": line["packs"],
                    "decision": verdict["decision"], "reasons": verdict["reasons"][:16]}
            if line.get("code"):
                item["code"] = line["code"]   # the label unit code scanned, kept in the ledger
            if "amount" in verdict:
                item["amount"], item["unit"] = verdict["amount"], verdict["unit"]
            items.append(item)
        approved = decision["decision"] != policy.REFUSE
        mode = decision["mode"]
        if approved:
            body = {"subject": subject, "items": items, "identity": "card", "mode": mode, "clerk": self.clerk,
                    "consumption": decision["consumption"], "reasons": decision["codes"][:32], "sale_id": sale_id,
                    "card": card_no, "proof": proof}
            if auth_id:
                body["auth"] = auth_id
            rtype = "sale"
        else:
            body = {"items": items, "reasons": (decision["codes"] or ["policy_input_invalid"])[:32],
                    "clerk": self.clerk, "subject": subject, "identity": "card", "mode": mode, "sale_id": sale_id,
                    "card": card_no, "proof": proof}
            rtype = "refusal"
        try:
            seq = self.ledger.append(rtype, body, self.wall_ms())
        except LedgerFull as err:
            return self._shown(False, err.code)
        return self._shown(approved, seq if approved else body["reasons"][0])

    def _refuse(self, lines, code):
        items = []
        for line in lines[:100]:
            item = {"product": line["product"], "packs": line["packs"]}
            if line.get("spec"):
                item["spec"] = line["spec"]
            items.append(item)
        body = {"items": items, "reasons": [code], "clerk": self.clerk, "identity": "card"}
        try:
            try:
                self.ledger.append("refusal", body, self.wall_ms())
            except envelope.Invalid:
                body["items"] = []     # lines the wire cannot carry (a product id with spaces...): the refusal stays
                self.ledger.append("refusal", body, self.wall_ms())
        except LedgerFull as err:
            code = err.code
        return self._shown(False, code)

    def _shown(self, approved, what):
        if approved:
            self.board.display.show(["已批准 APPROVED", "#%d" % what])
        else:
            self.board.display.show(["拒绝 REFUSED", reasons.text(what, "en")[:16]])
        self.board.signal(approved)
        return approved, what


def _two_lines(text, width=16):
    """`text` on at most two OLED lines, cut between words where it can."""
    if len(text) <= width:
        return [text]
    cut = text.rfind(" ", 0, width + 1)
    if cut <= 0:
        cut = width
    return [text[:cut], text[cut:].strip()[:width]]


def _shipped_catalogue():
    """The sample catalogue shipped with protocols/, for choosing products
    before the first sync (as the Pi counter scans with it); deciding offline
    still needs the synced one (`offline_no_config`)."""
    try:
        return _catalogue.load()
    except (OSError, ValueError, reasons.ReasonError):
        return {"products": {}}
