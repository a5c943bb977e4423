"""What each record type carries in its body (wire protocol v1).

The ledger is the shop's legal sales ledger (台账), so every kind of event at the
counter is a record: a sale, a refused sale, a void of an earlier sale, a return
of pesticide packaging, a heartbeat, and device events (disk full, tamper,
clock jump). Quantities are integers in the product's base unit (g or mL) and
money in fen, because the canonical encoding has no floats.

docs/protocol.md lists the same fields; change both together.
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
            "sale_id": ID,                  # idempotency key of the sale at the counter
        },
    ),
    REFUSAL: OBJ(
        required={"items": LIST(ITEM, 0, 100), "reasons": LIST(ID, 1, 32), "clerk": ID},
        optional={"subject": ID, "identity": IDENTITY, "mode": MODE, "card": ID, "sale_id": ID},
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
