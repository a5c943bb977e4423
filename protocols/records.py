"""What each record type carries in its body (wire protocol v1).

The ledger is the shop's legal sales ledger (台账), so every kind of event at the
counter is a record: a sale, a refused sale, a void of an earlier sale, a return
of pesticide packaging, a heartbeat, and device events (disk full, tamper,
clock jump). Quantities are integers in the product's base unit (g or mL) and
money in fen, because the canonical encoding has no floats.

docs/protocol.md lists the same fields; change both together.

The identity proof (`PROOF`: the card's signed payload and UID, the face match,
the clerk's override reason) is defined here, not in `protocols.authz`, because
both the authorization request and the `sale` and `refusal` bodies carry it and
`protocols.envelope` (which authz imports) reads these bodies: one shape, no
import cycle. `authz.PROOF` is this object.
"""

from protocols.schema import BOOL, ENUM, HEX, ID, INT, LIST, MAP, OBJ, STR

SALE = "sale"
REFUSAL = "refusal"
VOID = "void"
RETURN = "return"
HEARTBEAT = "heartbeat"
EVENT = "event"

IDENTITY = ENUM("card", "face", "card+face", "override")
MODE = ENUM("online", "offline")

# ---- identity proof (docs/protocol.md "Identity proof")

# Why a clerk vouches for a buyer instead of a card or a face: a fixed list, so
# the override-rate rule and the inspectors can tell a broken reader from routine.
OVERRIDE_REASONS = ("override_card_lost", "override_card_damaged", "override_card_pending",
                    "override_reader_fault", "override_camera_fault", "override_other")
FACE_SCALE = 10000          # face distances travel as integers: 1/10000 of the encoding distance
MAX_CARD_PAYLOAD = 300      # bytes; the largest card payload (docs/cards.md) is 281

CARD_PROOF = OBJ(required={"payload": HEX(2, 2 * MAX_CARD_PAYLOAD), "uid": HEX(8, 20)})
FACE_PROOF = OBJ(required={"distance": INT(0, 10 * FACE_SCALE), "gallery": INT(0)},
                 optional={"margin": INT(0, 10 * FACE_SCALE), "live": BOOL})
OVERRIDE_PROOF = OBJ(required={"reason": ENUM(*OVERRIDE_REASONS)}, optional={"text": STR(200)})
# One part per method the identity names; `{}` in a record says "no proof" (an
# identity built without one), which is not the same as a record from before
# the field existed (no `proof` at all).
PROOF = OBJ(optional={"card": CARD_PROOF, "face": FACE_PROOF, "override": OVERRIDE_PROOF})

ITEM = OBJ(
    required={"product": ID, "packs": INT(1, 100000)},
    optional={
        "spec": STR(32),             # pack specification code
        "code": STR(128),            # label unit code scanned (MoA No. 2579), if any
        "amount": INT(0),            # total product in base units (g or mL)
        "unit": ENUM("g", "mL"),
        "price_fen": INT(0),
        "decision": ENUM("approve", "refuse"),
        "reasons": LIST(ID, 0, 16),
    },
)

CONSUMPTION = MAP(INT(-10**12, 10**12), 64)  # category -> base units; negative on a void

BODIES = {
    SALE: OBJ(
        required={"subject": ID, "items": LIST(ITEM, 1, 100), "identity": IDENTITY, "mode": MODE, "clerk": ID},
        optional={
            "card": ID,
            "auth": ID,                     # authorization id from the gateway, online sales
            "consumption": CONSUMPTION,
            "reasons": LIST(ID, 0, 32),
            "total_fen": INT(0),
            "deposit_fen": INT(0),          # packaging deposit on the pesticide packs sold
            "sale_id": ID,                  # idempotency key of the sale at the counter
            "proof": PROOF,                 # how the identity was checked, as sent online
        },
    ),
    REFUSAL: OBJ(
        required={"items": LIST(ITEM, 0, 100), "reasons": LIST(ID, 1, 32), "clerk": ID},
        optional={"subject": ID, "identity": IDENTITY, "mode": MODE, "card": ID, "sale_id": ID, "proof": PROOF},
    ),
    VOID: OBJ(
        required={"voids": INT(1), "reason": ID, "clerk": ID},
        optional={"subject": ID, "consumption": CONSUMPTION, "auth": ID},
    ),
    RETURN: OBJ(
        required={"subject": ID, "codes": LIST(STR(128), 1, 500), "clerk": ID},
        optional={"links": LIST(INT(1), 0, 500), "deposit_fen": INT(0)},
    ),
    HEARTBEAT: OBJ(
        required={"uptime_s": INT(0), "backlog": INT(0)},
        optional={
            "acked": INT(0),
            "disk_free_kb": INT(0),
            "versions": MAP(STR(64), 16),
            "online": BOOL,
        },
    ),
    EVENT: OBJ(
        required={"code": ID},
        optional={"detail": STR(500), "ref": INT(0), "digest": HEX(64)},
    ),
}

TYPES = tuple(sorted(BODIES))
