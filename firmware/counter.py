"""The sales counter: the public service API the kiosk UI (terminal_ui) and the
simulator drive. One sale is

    ident = counter.read_card(payload, uid)           # or identify_card / identify_face
    cart = Cart()
    counter.scan(cart, qr_text)                       # label QR code, EAN-13, or add(cart, product, spec)
    outcome = counter.checkout(ident, cart)           # decide, record, then answer
    if outcome.approved: hand the goods over          # else show outcome.messages
    counter.void(outcome.seq, "customer_changed_mind")

`checkout` asks the gateway first (online authorization, `deadline_ms`, default
1.5 s) and, with no answer in time, runs the same `protocols.policy.decide`
against the last synced config and cached balances (offline, within the
offline fraction and caps). Either way the decision is written to the ledger
(`Agent.record`: a sale, or a refusal) before `checkout` returns, so an
"approved" the clerk sees is already a committed ledger row; if the ledger
cannot take it (disk full) `checkout` raises `LedgerError` and nothing is
approved. Refusals carry the policy's reason codes; `messages` holds the
Chinese texts for the screen (`reasons.text(code, "en")` for English).

Errors identifying a subject raise `CounterError` (or `card.CardRejected`,
`labelcode.LabelError` for scans), each with a stable `code`.

Each `Identity` carries the proof of how it was established (`proof`, the
`authz.PROOF` shape): the card's signed payload and UID from `read_card`, the
face match (distance, gallery version) from `identify_face`, the clerk's
reason from `identify_override`. `checkout` sends it with the authorization
request; the gateway refuses a claimed identity without it
(`identity_unproven`), so an Identity built by hand, without a proof, sells
offline only. Every sale and refusal record carries the same proof (`proof`,
`{}` when the identity has none), online or offline: the ledger shows on what
proof each sale was made, and the gateway checks an offline sale's proof when
the record arrives (`identity_unproven_offline`, an inspector's violation).
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field

from firmware.authclient import AuthClient
from firmware.configstore import ConfigStore, sale_moves
from firmware import prices
from firmware.ledger import Stored
from firmware.prices import Charge, PriceList
from protocols import authz, card as _card, catalogue as _catalogue, labelcode, policy, reasons

log = logging.getLogger(__name__)

reasons.register({
    "face_card_mismatch": ("人脸与所刷卡的主体不一致", "The face does not match the subject on the card"),
    "cart_line_invalid": ("购物清单中的这一行不对", "This cart line is not valid"),
    "sale_not_found": ("台账中查无此笔销售，无法作废", "No such sale in the ledger: nothing to void"),
})


class CounterError(reasons.ReasonError):
    """Something at the counter that needs the clerk: `code` says what."""


@dataclass(frozen=True)
class Identity:
    """Who is buying and how that was established (the record's `identity`)."""
    subject: str
    method: str                 # card, face, card+face, override
    card: str | None = None     # card number when a card was tapped
    # What shows the identity was checked (authz.PROOF: "card", "face",
    # "override"), sent with the authorization request. Not part of equality:
    # two identities of the same subject by the same method are the same buyer.
    proof: dict | None = field(default=None, compare=False, repr=False)


@dataclass
class CartLine:
    product: str
    spec: str
    packs: int = 1
    code: str | None = None     # the scanned label unit code or EAN, kept in the ledger
    unit_fen: int | None = None # the shop's price a pack when it went into the cart (None: not priced)


@dataclass
class Cart:
    lines: list[CartLine] = field(default_factory=list)

    def add(self, product: str, spec: str, packs: int = 1, code: str | None = None,
            unit_fen: int | None = None) -> CartLine:
        if not isinstance(packs, int) or isinstance(packs, bool) or packs < 1:
            raise CounterError("quantity_invalid", repr(packs))
        for line in self.lines:
            if line.product == product and line.spec == spec and code is None and line.code is None:
                line.packs += packs
                return line
        line = CartLine(product, spec, packs, code, unit_fen)
        self.lines.append(line)
        return line

    def remove(self, index: int) -> None:
        del self.lines[index]

    def as_policy_cart(self) -> list[dict]:
        return [{"product": l.product, "spec": l.spec, "packs": l.packs} for l in self.lines]


@dataclass(frozen=True)
class Outcome:
    approved: bool              # True: the sale is recorded, hand over the approved lines
    decision: str               # approve, partial, refuse
    mode: str                   # online (gateway decided) or offline (this terminal decided)
    codes: list[str]            # every reason code in the decision
    messages: list[str]         # their Chinese texts, for the screen
    action: str | None          # what the clerk can do (policy.ACTIONS), None when approved
    items: list[dict]           # per line: decision, reasons, consumption, max_packs
    consumption: dict           # what the sale counts against the quota
    record: str                 # ledger record type written: sale or refusal
    seq: int                    # its ledger seq
    sale_id: str
    auth: str | None = None     # the gateway's authorization id (online)
    remaining: dict = field(default_factory=dict)
    charge: Charge | None = None  # what the approved lines cost (firmware/prices.py); None when refused


class Counter:
    def __init__(self, agent, store: ConfigStore, auth: AuthClient, deadline_s: float = 1.5,
                 trusted_keys=(), clerk: str = "clerk", wall_ms=None, rng: random.Random | None = None,
                 monotonic=time.monotonic, prices: PriceList | None = None):
        self.agent = agent
        self.store = store
        self.auth = auth
        self.deadline_s = deadline_s
        self.trusted = _card.trust_store(trusted_keys)
        self.clerk = clerk
        self.wall_ms = wall_ms or agent.wall_ms
        self._rng = rng or random.Random()
        self._monotonic = monotonic
        self.prices = prices        # the shop's price list; None: sales carry no prices
        self._sample_index = None
        self.last_decision_ms: float | None = None

    # -- identity

    def today(self) -> str:
        return authz.local_date(self.wall_ms())

    def read_card(self, payload: bytes, uid: bytes) -> Identity:
        """Verify a card as read (signature, UID binding, the synced revocation
        list, validity dates); raises card.CardRejected with the reason. The
        identity carries the payload and UID as its proof for the gateway."""
        card = _card.verify(payload, uid, self.trusted, self.today(), self.store.revoked())
        return self.identify_card(card, payload)

    def identify_card(self, card: _card.Card, payload: bytes | None = None) -> Identity:
        """A card already verified by the reader service; the revocation list is
        checked again because it may have been synced since. `payload`: the
        signed payload as read (its UID is the card's), the proof the gateway
        asks for; without it the gateway refuses the sale online."""
        if card.card_no in self.store.revoked():
            raise _card.CardRejected("card_revoked", "card %s is on the revocation list" % card.card_no)
        proof = {"card": authz.card_proof(payload, card.uid)} if payload is not None else None
        return Identity(card.subject_id, "card", card.card_no, proof)

    def identify_face(self, match, with_card: Identity | None = None) -> Identity:
        """A face match result (firmware.face: `.subject`, `.reason`, and the
        `.distance` or `.identification.distance` that goes into the proof).
        With a card identity it confirms the card holder (card+face, needed for
        restricted products where configured); alone it identifies by face."""
        subject = getattr(match, "subject", None)
        if subject is None:
            raise CounterError(getattr(match, "reason", None) or "face_no_match")
        face = self._face_proof(match)
        if with_card is not None:
            if with_card.subject != subject:
                raise CounterError("face_card_mismatch", "card %s, face %s" % (with_card.subject, subject))
            proof = dict(with_card.proof or {})
            if face is not None:
                proof["face"] = face
            return Identity(subject, "card+face", with_card.card, proof or None)
        return Identity(subject, "face", None, {"face": face} if face is not None else None)

    def _face_proof(self, match) -> dict | None:
        """The match as the gateway sees it: distance, margin and liveness as
        the face service found them, against the gallery version this terminal
        runs. None when the result says no distance (nothing to prove)."""
        found = getattr(match, "identification", match)
        distance = getattr(found, "distance", None)
        if not isinstance(distance, (int, float)):
            return None
        margin = getattr(found, "margin", None)
        liveness = getattr(match, "liveness", None)
        return authz.face_proof(distance, self.store.versions().get("gallery", 0),
                                margin if isinstance(margin, (int, float)) else None,
                                getattr(liveness, "live", None) if liveness is not None else None)

    def identify_by_face(self, frames, product_class: str = "normal", with_card: Identity | None = None) -> Identity:
        """Camera frames (RGB arrays, a burst for liveness) matched 1:N against
        the shop's gallery as last synced (`agent.face`); raises CounterError
        with the face reason (too dark, no match, ambiguous, not live...)."""
        frames = list(frames)
        face = self.agent.face
        if len(frames) == 1 and not face.policy.required_for(product_class):
            match = face.identify(frames[0])
        else:
            match = face.identify_burst(frames, product_class)
        return self.identify_face(match, with_card)

    def identify_override(self, subject: str, reason: str | None = None, text: str | None = None) -> Identity:
        """The clerk vouches for the buyer, for a `reason` from
        `authz.OVERRIDE_REASONS` (`override_other` with a `text`); the policy
        refuses it unless the district allows overrides, and the record says
        so either way. Without a reason it is refused, online and offline
        (`identity_unproven`); an unknown reason raises CounterError."""
        if reason is None:
            return Identity(subject, "override")
        if reason not in authz.OVERRIDE_REASONS:
            raise CounterError("override_reason_missing", "unknown override reason %r" % (reason,))
        text = (text or "").strip()[:200] or None
        if reason in authz.OVERRIDE_NEEDS_TEXT and not text:
            raise CounterError("override_reason_missing", "%s needs a note" % reason)
        return Identity(subject, "override", None, {"override": authz.override_proof(reason, text)})

    # -- cart

    def index(self) -> _catalogue.Index:
        """Scanning index of the synced catalogue, else of the shipped sample (a
        brand-new terminal can scan before its first sync)."""
        index = self.store.index()
        if index is None:
            if self._sample_index is None:
                self._sample_index = _catalogue.Index(_catalogue.load())
            index = self._sample_index
        return index

    def scan(self, cart: Cart, text: str, packs: int = 1) -> CartLine:
        """Add what a scan names (MoA 2579 label code or EAN-13); raises
        labelcode.LabelError with the reason when it names no product."""
        hit = labelcode.scan(text, self.index())
        return cart.add(hit["product"], hit["spec"], packs, hit.get("code"), self._unit_fen(hit["product"], hit["spec"]))

    def add(self, cart: Cart, product: str, spec: str, packs: int = 1) -> CartLine:
        """Add by product key (registration number) and pack spec, chosen by hand."""
        if _catalogue.pack(self.index().data, product, spec)[0] is None:
            raise CounterError("unknown_product", "%s/%s" % (product, spec))
        return cart.add(product, spec, packs, unit_fen=self._unit_fen(product, spec))

    def _unit_fen(self, product: str, spec: str) -> int | None:
        return self.prices.price(product, spec) if self.prices else None

    def charge(self, lines: list[CartLine], approved: list[bool]) -> Charge:
        """The bill for `lines` (approved[i]: line i is sold) at the prices
        they went into the cart at, with the deposit on pesticide packs."""
        data = self.index().data
        bill = [(line.unit_fen, line.packs, ok, (_catalogue.pack(data, line.product, line.spec)[0] or {}).get("kind")
                 == "pesticide") for line, ok in zip(lines, approved)]
        return prices.charge(bill, self.prices.deposit_fen() if self.prices else 0)

    # -- deciding

    def new_sale_id(self) -> str:
        return "%s-%x%04x" % (self.agent.terminal[:40], self.wall_ms(), self._rng.getrandbits(16))

    def decide_offline(self, identity: Identity, cart: list[dict]) -> dict:
        """The policy against the last synced config and cached balances (wire form)."""
        started = self._monotonic()
        date = self.today()
        params, catalogue = self.store.params(), self.store.catalogue()
        if params is None or catalogue is None:
            decision = authz.refusal("offline", date, cart, "offline_no_config")
        elif identity.method == "override" and "override" not in (identity.proof or {}):
            # a card or a face was checked here; an override is only a clerk's word and its reason
            decision = authz.refusal("offline", date, cart, "identity_unproven", ("override_reason_missing",),
                                     "identify")
        else:
            subject = self.store.subject(identity.subject)
            if subject is None:
                decision = authz.refusal("offline", date, cart, "offline_subject_unknown")
            else:
                inputs = {
                    "date": date, "mode": "offline", "identity": identity.method, "subject": subject,
                    "shop": self.store.shop() or {"id": self.agent.config.shop, "designated": False},
                    "cart": cart, "balances": self.store.used(identity.subject),
                    "catalogue": catalogue, "params": params,
                }
                decision = authz.wire_decision(policy.decide(inputs))
        self.last_decision_ms = (self._monotonic() - started) * 1000
        return decision

    def checkout(self, identity: Identity, cart: Cart, clerk: str | None = None, sale_id: str | None = None) -> Outcome:
        """Decide (online, else offline), record the sale or refusal, then answer."""
        if not cart.lines:
            raise CounterError("cart_empty")
        clerk = clerk or self.clerk
        sale_id = sale_id or self.new_sale_id()
        lines = cart.as_policy_cart()
        auth_id = None
        response = self.auth.request(sale_id, identity.subject, identity.method, lines, self.deadline_s,
                                     card=identity.card, clerk=clerk, proof=identity.proof)
        if response is not None and response["status"] == authz.OK:
            decision = response["decision"]
            auth_id = response.get("auth")
            self.store.learn(response)
        else:
            if response is not None:
                log.warning("online authorization failed terminal=%s sale=%s code=%s; deciding offline",
                            self.agent.terminal, sale_id, response.get("code"))
            decision = self.decide_offline(identity, lines)
        return self._record(identity, cart, clerk, sale_id, decision, auth_id)

    def _record(self, identity: Identity, cart: Cart, clerk: str, sale_id: str, decision: dict,
                auth_id: str | None) -> Outcome:
        items = []
        for line, verdict in zip(cart.lines, decision["items"]):
            item = {"product": line.product, "spec": line.spec, "packs": line.packs,
                    "decision": verdict["decision"], "reasons": verdict["reasons"][:16]}
            if line.code:
                item["code"] = line.code[:128]
            if "amount" in verdict:
                item["amount"], item["unit"] = verdict["amount"], verdict["unit"]
            items.append(item)
        approved = decision["decision"] != policy.REFUSE
        mode = decision["mode"]
        bill = None
        if approved:
            body = {"subject": identity.subject, "items": items, "identity": identity.method, "mode": mode,
                    "clerk": clerk, "consumption": decision["consumption"], "reasons": decision["codes"][:32],
                    "sale_id": sale_id}
            bill = self.charge(cart.lines, [item["decision"] == policy.APPROVE for item in items])
            for item, fen in zip(items, bill.lines):
                if fen is not None:
                    item["price_fen"] = fen
            if bill.deposit_fen:
                body["deposit_fen"] = bill.deposit_fen
            if bill.priced:
                body["total_fen"] = bill.total_fen
            if auth_id:
                body["auth"] = auth_id
            rtype = "sale"
        else:
            body = {"items": items, "reasons": (decision["codes"] or ["policy_input_invalid"])[:32], "clerk": clerk,
                    "subject": identity.subject, "identity": identity.method, "mode": mode, "sale_id": sale_id}
            rtype = "refusal"
        if identity.card:
            body["card"] = identity.card
        # What the identity was proven with, exactly as sent online; `{}` says
        # "nothing", which the gateway tells apart from a record written before
        # the field existed (docs/protocol.md "Identity proof").
        body["proof"] = identity.proof or {}
        stored: Stored = self.agent.record(rtype, body)
        if approved and mode == "offline":
            moves = sale_moves(decision["consumption"], decision.get("periods", {}), self.store.params(),
                               decision["date"])
            self.store.add_local(stored.seq, identity.subject, moves, self.wall_ms())
        else:
            self.store.mark_indexed(stored.seq)
        log.info("checkout terminal=%s seq=%d sale=%s subject=%s mode=%s decision=%s codes=%s",
                 self.agent.terminal, stored.seq, sale_id, identity.subject, mode, decision["decision"],
                 ",".join(decision["codes"]))
        return Outcome(
            approved=approved, decision=decision["decision"], mode=mode, codes=list(decision["codes"]),
            messages=[reasons.text(code) for code in decision["codes"]], action=decision.get("action"),
            items=decision["items"], consumption=decision["consumption"], record=rtype, seq=stored.seq,
            sale_id=sale_id, auth=auth_id, remaining=decision.get("remaining", {}), charge=bill)

    def void(self, seq: int, reason: str, clerk: str | None = None) -> Stored:
        """Void an earlier sale of this terminal: a void record that gives its
        consumption back (at the gateway when the record arrives, and in the
        offline cache at once)."""
        sale = None
        for number, text in self.agent.ledger.pending(seq - 1, 1):
            if number == seq:
                sale = json.loads(text)
        if sale is None or sale["type"] != "sale":
            raise CounterError("sale_not_found", "seq %d" % seq)
        body = sale["body"]
        consumption = {c: -a for c, a in (body.get("consumption") or {}).items()}
        void = {"voids": seq, "reason": reason, "clerk": clerk or self.clerk, "subject": body["subject"]}
        if consumption:
            void["consumption"] = consumption
        if body.get("auth"):
            void["auth"] = body["auth"]
        stored = self.agent.record("void", void)
        sold = self.store.moves_of(seq)
        if sold:
            moves = [[c, p, -a] for c, p, a in sold]
        else:
            moves = sale_moves(consumption, {}, self.store.params(), authz.local_date(sale["time"]))
        self.store.add_local(stored.seq, body["subject"], moves, self.wall_ms())
        return stored

    def status(self) -> dict:
        """For the kiosk's status bar: online, config versions, backlog."""
        out = self.agent.status()
        out["versions"] = self.store.versions()
        out["config_behind"] = self.agent.sync.behind()
        return out
