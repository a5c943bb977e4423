"""Online authorization messages (wire protocol v1, docs/protocol.md "Online
authorization"): the request a terminal sends before a sale and the gateway's
answer, on the per-terminal topics `agri/v1/t/{id}/auth/req` and `.../auth/resp`.

Request/response rides on plain MQTT 3.1.1 (the MicroPython terminal's umqtt has
no MQTT 5 response topics), so the correlation id travels in the payload (`id`).
`sale_id` is the idempotency key: the gateway consumes quota at most once per
(terminal, sale_id) however often, or however late, the request arrives, and the
sale record that follows carries the same `sale_id` (and the `auth` id) so ingest
matches it to its authorization instead of consuming again.

Both directions are MACed with the terminal's record key, each with its own
prefix, so neither can be replayed as the other or as a record:

    request  mac = HMAC-SHA256(key, b"authreq:"  + canonical(request without "mac"))
    response mac = HMAC-SHA256(key, b"authresp:" + canonical(response without "mac"))

A forged response would let a broker operator approve a sale the gateway never
saw; a forged request could only consume a subject's quota, and the broker ACL
already keeps other terminals off this topic.

A request carries the proof of the identity it claims (`proof`), because a
terminal's own key proves only which terminal asks, not who is buying: with
nothing but its key a terminal could otherwise spend any subject's quota by
naming the subject. The card's signed payload and UID (the gateway verifies
them with `protocols.card.verify`, against the registry keys and the
revocation list, and that the card names the claimed subject); the face
match the terminal computed (distance, gallery version: signed by the request
MAC, which is all a terminal can sign); the clerk's override reason.
`check_proof` is the gateway's check, pure like the rest.

Integers only (the canonical encoding has no floats); pure; runs on MicroPython.
"""

import binascii

from protocols import canonical, configsync, envelope, reasons, records
from protocols import card as _card
from protocols.card import iso_from_days
from protocols.schema import BOOL, ENUM, HEX, ID, INT, LIST, MAP, OBJ, STR, SchemaError, check

VERSION = 1
MAX_AUTH_BYTES = 32 * 1024
DEFAULT_DEADLINE_MS = 1500   # the counter waits this long before deciding offline
LOCAL_OFFSET_MS = 8 * 3600 * 1000  # China Standard Time, UTC+8, no daylight saving

REQ_PREFIX = b"authreq:"
RESP_PREFIX = b"authresp:"

OK = "ok"
ERROR = "error"

reasons.register({
    "subject_unknown": ("登记系统中查无此主体，请到农业部门登记", "The subject is not in the registry: register with the agriculture office"),
    "auth_superseded": ("该笔销售已按离线方式记账，不再联网授权", "This sale was already recorded offline; no online authorization is given"),
    "auth_unavailable": ("联网授权暂不可用", "Online authorization is unavailable right now"),
    "offline_no_config": ("网络中断且本机尚未同步配置，无法离线销售", "Offline, and this terminal has no synced configuration: no offline sales"),
    "offline_subject_unknown": ("网络中断：本机没有该主体的登记和定额数据，无法离线销售", "Offline: this terminal holds no registry entry or balance for the subject"),
})

reasons.register({
    "identity_unproven": ("身份未经核验：请刷主体信息卡、刷脸，或由店员选择代为确认的原因",
                          "Identity not proven: tap the subject card, use the face check, or give the override reason"),
    "card_subject_mismatch": ("卡上的主体与所报主体不一致", "The card belongs to another subject than the one named"),
    "override_reason_missing": ("店员代为确认须选择原因（选“其他”须写明）",
                                "A clerk override needs a reason (and a note when the reason is 'other')"),
})

# The texts of OVERRIDE_REASONS (the list is in protocols.records, with the proof shape).
reasons.register({
    "override_card_lost": ("卡已挂失，补办中", "Card lost, replacement pending"),
    "override_card_damaged": ("卡损坏，无法读取", "Card damaged, cannot be read"),
    "override_card_pending": ("新登记主体，尚未发卡", "Newly registered, card not issued yet"),
    "override_reader_fault": ("读卡器故障", "Card reader out of order"),
    "override_camera_fault": ("摄像头故障，无法刷脸", "Camera out of order, no face check"),
    "override_other": ("其他原因（须写明）", "Other reason (a note is required)"),
})
OVERRIDE_NEEDS_TEXT = ("override_other",)

FACE_MAX_DISTANCE = 6000    # 0.6: dlib's own tolerance, above the terminals' 0.5 (docs/face.md)

NEEDS = {"card": ("card",), "face": ("face",), "card+face": ("card", "face"), "override": ("override",)}

# The proof shape is the record bodies' (one definition): PROOF, its parts, and
# the constants they are made of.
IDENTITY = records.IDENTITY
OVERRIDE_REASONS = records.OVERRIDE_REASONS
FACE_SCALE = records.FACE_SCALE
MAX_CARD_PAYLOAD = records.MAX_CARD_PAYLOAD
CARD_PROOF = records.CARD_PROOF
FACE_PROOF = records.FACE_PROOF
OVERRIDE_PROOF = records.OVERRIDE_PROOF
PROOF = records.PROOF

DECISION_VALUE = ENUM("approve", "partial", "refuse")
CONSUMPTION = MAP(INT(-10 ** 12, 10 ** 12), 64)
USED = MAP(MAP(INT(-10 ** 12, 10 ** 12), 16), 64)  # category -> period -> used

LINE = OBJ(required={"product": ID, "spec": STR(32), "packs": INT(1, 100000)})

REQUEST = OBJ(
    required={
        "v": INT(1, 1),
        "terminal": ID,
        "id": ID,                 # correlation id, echoed in the response
        "sale_id": ID,            # idempotency key, also in the sale record
        "time": INT(0),           # terminal wall clock, ms (informational)
        "subject": ID,
        "identity": IDENTITY,
        "cart": LIST(LINE, 1, 100),
        "mac": HEX(64),
    },
    optional={"card": ID, "clerk": ID, "proof": PROOF},
)

ITEM_DECISION = OBJ(
    required={"line": INT(0, 1000), "decision": ENUM("approve", "refuse"), "reasons": LIST(ID, 0, 32),
              "consumption": CONSUMPTION},
    optional={"product": STR(64), "spec": STR(32), "packs": INT(-10 ** 9, 10 ** 9), "max_packs": INT(0),
              "status": ENUM("normal", "restricted", "banned"), "amount": INT(0), "unit": ENUM("g", "mL"),
              "action": ID},
)

DECISION = OBJ(
    required={"decision": DECISION_VALUE, "mode": ENUM("online", "offline"), "date": STR(10),
              "codes": LIST(ID, 0, 64), "consumption": CONSUMPTION, "items": LIST(ITEM_DECISION, 0, 100)},
    optional={"reasons": LIST(ID, 0, 32), "action": ID, "periods": MAP(STR(32), 64), "remaining": CONSUMPTION,
              "policy": INT(0), "params_version": INT(0), "catalogue_version": INT(0)},
)

SUBJECT_ENTRY = configsync.SUBJECT  # one shape for the entry, in the config section and here

RESPONSE = OBJ(
    required={"v": INT(1, 1), "terminal": ID, "id": ID, "sale_id": ID, "status": ENUM(OK, ERROR),
              "time": INT(0), "mac": HEX(64)},
    optional={
        "auth": ID,               # authorization id, when anything was consumed
        "decision": DECISION,     # the policy's decision, wire form
        "code": ID,               # status "error": why no decision was made
        "replayed": BOOL,         # the answer first given to this sale_id
        "used": USED,             # the subject's balances after this decision
        "rev": INT(0),            # quota revision the balances are as of
        "acked": INT(0),          # this terminal's records the balances include
        "subject": SUBJECT_ENTRY, # registry entry, cached for offline use
    },
)


class Invalid(reasons.ReasonError):
    """An authorization message that must not be acted on; `code` says why."""


# ---------------------------------------------------------------- helpers

def local_date(ms, offset_ms=LOCAL_OFFSET_MS):
    """YYYY-MM-DD of a wall-clock time in ms, in China Standard Time: the date the
    policy decides a sale on (periods, bans in force). Both sides use this."""
    return iso_from_days((ms + offset_ms) // 86400000)


def _drop_none(obj):
    out = {}
    for key in obj:
        if obj[key] is not None:
            out[key] = obj[key]
    return out


def wire_decision(result):
    """The policy's output (protocols.policy.decide) in its wire form: the same
    facts, without the subject and shop echo and without nulls (the schema has
    no null type). Terminal and gateway both show and record this shape."""
    items = []
    for item in result["items"]:
        items.append(_drop_none({
            "line": item["line"], "product": item.get("product"), "spec": item.get("spec"),
            "packs": item.get("packs") if type(item.get("packs")) is int else None,
            "decision": item["decision"], "reasons": item["reasons"], "consumption": item["consumption"],
            "max_packs": item.get("max_packs"), "status": item.get("status"), "amount": item.get("amount"),
            "unit": item.get("unit"), "action": item.get("action"),
        }))
    return _drop_none({
        "decision": result["decision"], "mode": result["mode"], "date": result["date"],
        "codes": result["codes"], "reasons": result["reasons"], "action": result.get("action"),
        "consumption": result["consumption"], "items": items, "periods": result.get("periods"),
        "remaining": result.get("remaining"), "policy": result.get("policy"),
        "params_version": result.get("params_version"), "catalogue_version": result.get("catalogue_version"),
    })


def refusal(mode, date, cart, code, more=(), action=None):
    """A whole-cart refusal for a reason outside the policy (unknown subject,
    no synced config, an unproven identity): same shape as a policy decision.
    `more`: further codes after `code` (the specific cause); `action`: what
    the clerk can do (protocols.policy.ACTIONS)."""
    codes = [code] + [c for c in more if c != code]
    items = []
    for line, entry in enumerate(cart):
        items.append({"line": line, "product": entry.get("product"), "spec": entry.get("spec"),
                      "packs": entry.get("packs"), "decision": "refuse", "reasons": list(codes), "consumption": {}})
    out = {"decision": "refuse", "mode": mode, "date": date, "codes": codes, "reasons": list(codes),
           "consumption": {}, "items": items}
    if action is not None:
        out["action"] = action
    return out


# ---------------------------------------------------------------- identity proof

def card_proof(payload, uid):
    """The proof of a card identity: the payload as read and the UID it was read from."""
    return {"payload": binascii.hexlify(bytes(payload)).decode(), "uid": binascii.hexlify(bytes(uid)).decode()}


def face_proof(distance, gallery, margin=None, live=None):
    """The proof of a face identity: the match the terminal computed (encoding
    distance as a float, 0.4 -> 4000) against gallery version `gallery`."""
    out = {"distance": _scaled(distance), "gallery": gallery}
    if margin is not None:
        out["margin"] = _scaled(margin)
    if live is not None:
        out["live"] = bool(live)
    return out


def _scaled(value):
    return min(10 * FACE_SCALE, max(0, int(value * FACE_SCALE + 0.5)))


def override_proof(reason, text=None):
    """The proof of a clerk override: its reason from OVERRIDE_REASONS and an optional note."""
    out = {"reason": reason}
    if text:
        out["text"] = text
    return out


def check_proof(request, trusted, today, revoked=(), face_max=FACE_MAX_DISTANCE):
    """The verified card of a request (None when it claims no card), or
    Invalid with the code the clerk sees.

    `trusted` maps key id to registry public key (`card.trust_store`), `today`
    is the checker's own date, `revoked` holds revoked card numbers. What it
    checks is what the request alone can show: the card is signed by the
    registry, bound to the UID, valid today, not revoked, and names the claimed
    subject (and card number); the face match is within `face_max` on a
    gallery; the override names a reason (with a note for "other"). What needs
    the registry (the subject enrolled, in the terminal's area) is the
    caller's."""
    proof = request.get("proof") or {}
    identity = request["identity"]
    for part in NEEDS[identity]:
        if part not in proof:
            # an override's proof is its reason: say so, as the counter does offline
            raise Invalid("override_reason_missing" if part == "override" else "identity_unproven",
                          "%s claimed without %s proof" % (identity, part))
    verified = None
    if "card" in NEEDS[identity]:
        try:
            payload = binascii.unhexlify(proof["card"]["payload"])
            uid = binascii.unhexlify(proof["card"]["uid"])
        except (ValueError, TypeError):
            raise Invalid("card_tampered", "card proof is not whole bytes")
        try:
            verified = _card.verify(payload, uid, trusted, today, revoked)
        except _card.CardRejected as err:
            raise Invalid(err.code, err.detail)
        if verified.subject_id != request["subject"]:
            raise Invalid("card_subject_mismatch", "card %s is %s's, request names %s"
                          % (verified.card_no, verified.subject_id, request["subject"]))
        if request.get("card") is not None and request["card"] != verified.card_no:
            raise Invalid("card_subject_mismatch", "request names card %s, the proof is card %s"
                          % (request["card"], verified.card_no))
    if "face" in NEEDS[identity]:
        face = proof["face"]
        if face["gallery"] == 0:
            raise Invalid("identity_unproven", "face match without a gallery")
        if face["distance"] > face_max:
            raise Invalid("identity_unproven", "face distance %d above %d" % (face["distance"], face_max))
    if "override" in NEEDS[identity]:
        override = proof["override"]
        if override["reason"] in OVERRIDE_NEEDS_TEXT and not (override.get("text") or "").strip():
            raise Invalid("override_reason_missing", "%s without a note" % override["reason"])
    return verified


def unproven(mode, date, cart, err):
    """The refusal of a request whose identity is not proven (`check_proof`'s
    Invalid): `identity_unproven` first, the specific cause after it."""
    return refusal(mode, date, cart, "identity_unproven", (err.code,), "identify")


def _mac(key, prefix, message):
    return envelope.canonical_hmac_hex(key, prefix, message)


def _parse(payload, schema, what):
    return envelope.check_shape(envelope.parse_json(payload, MAX_AUTH_BYTES, Invalid), schema, what, Invalid)


def _verify(message, key, prefix):
    if not envelope.constant_time_equal(_mac(key, prefix, message), message["mac"]):
        raise Invalid("bad_mac", "%s %s" % (message.get("terminal"), message.get("id")))
    return message


# ---------------------------------------------------------------- request

def encode_request(key, terminal, request_id, sale_id, time_ms, subject, identity, cart, card=None, clerk=None,
                   proof=None):
    """Signed request bytes; checked against the schema first, so a terminal
    never sends what the gateway would refuse for its shape. `proof`: the
    identity proof (PROOF: `card_proof`, `face_proof`, `override_proof` under
    "card", "face", "override")."""
    message = {"v": VERSION, "terminal": terminal, "id": request_id, "sale_id": sale_id, "time": time_ms,
               "subject": subject, "identity": identity,
               "cart": [{"product": c["product"], "spec": c["spec"], "packs": c["packs"]} for c in cart],
               "mac": "0" * 64}
    if card is not None:
        message["card"] = card
    if clerk is not None:
        message["clerk"] = clerk
    if proof:
        message["proof"] = proof
    try:
        check(message, REQUEST, "request")
    except SchemaError as err:
        raise Invalid("schema_invalid", str(err))
    message["mac"] = _mac(key, REQ_PREFIX, message)
    return canonical.encode(message)


def decode_request(payload):
    """Parse and check the shape; the MAC is checked with `verify_request` once
    the terminal's key is looked up."""
    return _parse(payload, REQUEST, "request")


def verify_request(message, key):
    return _verify(message, key, REQ_PREFIX)


# ---------------------------------------------------------------- response

def encode_response(key, terminal, request_id, sale_id, time_ms, status, **fields):
    """Signed response bytes. `fields`: auth, decision, code, replayed, used,
    rev, acked, subject (see RESPONSE)."""
    message = {"v": VERSION, "terminal": terminal, "id": request_id, "sale_id": sale_id, "time": time_ms,
               "status": status, "mac": "0" * 64}
    for name in fields:
        if fields[name] is not None:
            message[name] = fields[name]
    try:
        check(message, RESPONSE, "response")
    except SchemaError as err:
        raise Invalid("schema_invalid", str(err))
    message["mac"] = _mac(key, RESP_PREFIX, message)
    return canonical.encode(message)


def decode_response(payload, key):
    """Parse, check and verify a response; raises Invalid."""
    return _verify(_parse(payload, RESPONSE, "response"), key, RESP_PREFIX)
