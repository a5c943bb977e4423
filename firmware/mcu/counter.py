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

from protocols import authz, catalogue as _catalogue, envelope, labelcode, pn532host, policy, reasons, topics
from protocols.card import CardRejected, trust_store

from ledger import LedgerFull

reasons.register({
    "cart_line_invalid": ("购物清单中的这一行不对", "This cart line is not valid"),   # as firmware/counter.py
    "card_not_presented": ("未检测到卡，请重新刷卡", "no card on the reader, tap again"),
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
        self.trusted = trust_store([bytes.fromhex(k) for k in settings.get("registry_keys", [])])
        self._log = log or (lambda *a: None)
        self._pending = {}          # correlation id -> response
        self._learned = {}          # subject -> (rev, acked, used) from online answers
        self._subjects = {}         # subject entries from online answers (buyers from elsewhere)
        self._resp_topic = topics.topic(terminal, topics.AUTH_RESP)
        self._req_topic = topics.topic(terminal, topics.AUTH_REQ)
        session.subscribe(self._resp_topic, self.on_response)
        self.last_tap_ms = None     # card on the field to verified subject id

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
        section = self.store.section("subjects")
        if section:
            for entry in section["subjects"]:
                if entry["id"] == subject_id:
                    return entry
        return self._subjects.get(subject_id)

    def used(self, subject_id, params):
        """The gateway's figures for the subject, plus this terminal's offline
        sales the figures do not include yet (ledger seqs above their acked)."""
        rev, acked, used = -1, 0, {}
        balances = self.store.section("balances")
        if balances and subject_id in balances["used"]:
            rev, acked, used = balances["rev"], balances["acked"], balances["used"][subject_id]
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
                if '"mode":"offline"' not in text or '"type":"sale"' not in text:
                    continue
                record = json.loads(text)
                body = record["body"]
                if body.get("subject") != subject_id:
                    continue
                date = authz.local_date(record["time"])
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


def _shipped_catalogue():
    """The sample catalogue shipped with protocols/, for choosing products
    before the first sync (as the Pi counter scans with it); deciding offline
    still needs the synced one (`offline_no_config`)."""
    try:
        return _catalogue.load()
    except (OSError, ValueError, reasons.ReasonError):
        return {"products": {}}
