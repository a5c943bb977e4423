"""What every field on the wire means, in one place: the JSON Schemas'
`description`s and the field tables of docs/protocol.md are generated from
this (`protocols/schema_export.py`), and the shapes (type, range, required)
come from the schema tuples themselves, so neither is written twice.
tests/test_schemas.py fails when a field of a shape has no meaning here, or a
meaning names a field no shape has.

Plain data; CPython only in practice (nothing MicroPython runs imports it).
"""

TITLES = {
    "record": "A ledger record: one event at the counter, signed and chained once when it is committed.",
    "sale": "Body of a `sale` record: goods sold to a subject.",
    "refusal": "Body of a `refusal` record: a sale the counter refused (policy, identity, or the clerk).",
    "void": "Body of a `void` record: an earlier sale cancelled; its consumption is given back.",
    "return": "Body of a `return` record: empty pesticide containers brought back (packaging recovery).",
    "heartbeat": "Body of a `heartbeat` record: a sign of life written into the ledger (optional; the Pi "
                 "terminal uses the retained status message instead).",
    "event": "Body of an `event` record: a device event worth keeping in the legal ledger.",
    "item": "A cart line in a sale or refusal record.",
    "proof": "How the buyer's identity was checked: one part per method the identity names; `{}` for none.",
    "card_proof": "A card identity: the signed card payload and the UID it was read from (docs/cards.md).",
    "face_proof": "A face identity: the match the terminal computed, signed by the message's MAC.",
    "override_proof": "A clerk override: why the clerk vouched for the buyer.",
    "batch": "Records sent together on `up`, exactly as stored in the terminal's ledger.",
    "ack": "The gateway's cumulative end-to-end acknowledgement: every seq <= `upto` is in its committed database.",
    "status": "The terminal's presence and progress; the last will is the same message with `state` offline.",
    "auth_request": "An online authorization request, sent before a sale.",
    "cart_line": "A line of the cart the policy decides on.",
    "auth_response": "The gateway's answer to an authorization request.",
    "decision": "The quota policy's decision in wire form (`authz.wire_decision`), the same shape online and offline.",
    "item_decision": "The decision on one cart line.",
    "subject_entry": "A registry entry as terminals get it (never an ID number).",
    "config": "A message on the `config` topic: a manifest or a chunk, told apart by `kind`.",
    "config_manifest": "What configuration the gateway holds for this terminal now (retained).",
    "manifest_section": "One section in a manifest.",
    "config_chunk": "A slice of one config section's canonical text.",
    "section_shop": "The `shop` section: the terminal's shop.",
    "section_subjects": "The `subjects` section: the registry entries of the subjects the shop serves.",
    "section_balances": "The `balances` section: quota used by those subjects in the current periods.",
    "section_revocations": "The `revocations` section: revoked subject cards.",
    "section_gallery": "The `gallery` section: the enrolled face encodings of the shop's subjects.",
}

_V = "protocol version; any other value is refused with unsupported_version"
_MAC = "HMAC-SHA256 under the terminal's 32-byte key (the 64 hex digits `gateway terminal add` prints, decoded), " \
       "over a prefix and the canonical message without `mac`; lowercase hex"
_TERMINAL = "the terminal id; must equal the topic's terminal"
_TIME = "wall clock of the sender, ms since the Unix epoch (UTC)"
_CLERK = "id of the clerk at the counter (e.g. `clerk1`), as configured or signed in"
_SUBJECT = "subject (主体) id from the registry, e.g. `S-330110-0001`"
_CARD = "card number of the subject card shown (from the card's payload), when a card was used"
_IDENTITY = "how the buyer was identified: `card`, `face`, `card+face` (both), `override` (the clerk vouched)"
_MODE = "`online`: decided by the gateway; `offline`: decided on the terminal with the same policy"
_SALE_ID = "the counter's idempotency key of this sale; the authorization request for it carries the same " \
           "value; unique per terminal (the Pi terminal: `<terminal>-<wall clock ms in hex><4 random hex digits>`)"
_CONSUMPTION = "quota category (e.g. `fert_n`, `pesticide_g`) → amount consumed in the category's base unit " \
               "(g of nutrient or product, mL); negative gives quota back"
_REASONS = "reason codes (protocols.reasons; docs/protocol.md and docs/policy.md list them), in order"
_PROOF = "the identity proof the decision was made on (`{}`: the identity had none)"
_AUTH = "authorization id the gateway gave in its response (`auth`), for an online sale"
_VERSIONS = "config section name → the version it runs, as a decimal string (e.g. `{\"catalogue\":\"12\"}`)"
_DIGEST = "SHA-256 of the section's whole canonical text, lowercase hex"

FIELDS = {
    "record": {
        "v": _V,
        "terminal": "the terminal that wrote the record (must equal the topic's terminal)",
        "seq": "per-terminal sequence number: 1, 2, 3, ... without holes, never reused (not after a restart, "
               "not after rows are deleted)",
        "prev": "digest of record `seq - 1` (SHA-256 of its canonical text without `mac`); 64 zeros for seq 1",
        "time": "terminal wall clock when the record was committed, ms since the Unix epoch (UTC)",
        "type": "what happened; selects the body's shape",
        "body": "the event's fields: the definition named by `type`",
        "mac": _MAC + "; prefix `record:`",
    },
    "sale": {
        "subject": _SUBJECT,
        "items": "the cart lines sold",
        "identity": _IDENTITY,
        "mode": _MODE,
        "clerk": _CLERK,
        "card": _CARD,
        "auth": _AUTH,
        "consumption": _CONSUMPTION + "; what this sale consumes",
        "reasons": _REASONS + ": notes on an approved sale (e.g. a partial approval)",
        "total_fen": "what the buyer paid, in fen (0.01 yuan): the lines' `price_fen` plus `deposit_fen`; "
                     "absent when the shop set no prices",
        "deposit_fen": "packaging deposit charged on the pesticide packs sold, in fen, paid back when the "
                       "containers are returned; absent when none",
        "sale_id": _SALE_ID,
        "proof": _PROOF,
    },
    "refusal": {
        "items": "the cart lines refused (may be empty: refused before any product was scanned)",
        "reasons": _REASONS + ": why the sale was refused",
        "clerk": _CLERK,
        "subject": _SUBJECT + ", when known",
        "identity": _IDENTITY,
        "mode": _MODE,
        "card": _CARD,
        "sale_id": _SALE_ID,
        "proof": _PROOF,
    },
    "void": {
        "voids": "seq of the sale record (same terminal) this cancels",
        "reason": "why, as a reason code (e.g. `clerk_error`)",
        "clerk": _CLERK,
        "subject": "subject of the voided sale",
        "consumption": _CONSUMPTION + "; negative: what the void gives back",
        "auth": "authorization id of the voided sale, when it had one",
    },
    "return": {
        "subject": _SUBJECT + " returning the containers",
        "codes": "label unit codes (MoA Announcement No. 2579) of the returned containers, as scanned",
        "clerk": _CLERK,
        "links": "seqs of this terminal's sale records the containers came from, when known",
        "deposit_fen": "deposit paid back, in fen",
    },
    "heartbeat": {
        "uptime_s": "seconds since the agent started",
        "backlog": "records above the watermark (head - acked)",
        "acked": "the terminal's watermark",
        "disk_free_kb": "free space on the ledger's file system, KiB",
        "versions": _VERSIONS,
        "online": "whether the terminal was connected when it wrote this",
    },
    "event": {
        "code": "what happened, a reason code (e.g. `ledger_disk_full`, `clock_jump`, `tamper`)",
        "detail": "free text for people",
        "ref": "seq of a record this event is about, if any",
        "digest": "a digest the event vouches for (e.g. of an exported ledger file), lowercase hex",
    },
    "item": {
        "product": "product id: registration number (e.g. `PD20080001`) or catalogue product key",
        "packs": "number of packs",
        "spec": "pack specification code (docs/catalogue.md)",
        "code": "label unit code scanned (MoA Announcement No. 2579), if any",
        "amount": "total product in base units (g or mL)",
        "unit": "base unit of `amount`",
        "price_fen": "price of the line in fen: packs times the shop's price a pack at the time of the sale; "
                     "absent on a refused line or a product the shop has not priced",
        "decision": "the policy's decision on this line",
        "reasons": _REASONS + " for this line",
    },
    "proof": {
        "card": "present when the identity includes `card`",
        "face": "present when the identity includes `face`",
        "override": "present when the identity is `override`",
    },
    "card_proof": {
        "payload": "the card payload as read, lowercase hex (docs/cards.md; at most 300 bytes)",
        "uid": "the card UID the reader saw, lowercase hex (4, 7 or 10 bytes)",
    },
    "face_proof": {
        "distance": "encoding distance to the matched subject in 1/10000 (0.3812 → 3812)",
        "gallery": "version of the `gallery` config section matched in (0: no gallery)",
        "margin": "distance to the next subject minus `distance`, 1/10000",
        "live": "the liveness check's verdict, when one ran",
    },
    "override_proof": {
        "reason": "why the clerk vouched (`override_other` needs `text`)",
        "text": "the clerk's note",
    },
    "batch": {
        "v": _V,
        "terminal": _TERMINAL + " (terminal_mismatch otherwise: the whole message is quarantined, not acked)",
        "after": "seq of the ledger row right before the first record (its watermark or cursor); 0 before seq 1",
        "records": "records of this terminal in increasing seq, each exactly as stored (never re-signed)",
    },
    "ack": {
        "v": _V,
        "terminal": "the terminal acknowledged; a terminal ignores an ack naming another",
        "upto": "every seq <= upto of this terminal is committed at the gateway (stored, quarantined with an "
                "alert, or recorded missing); the terminal's new watermark unless beyond its head or below it",
        "seen": "highest seq in the batch this ack answers; seen > upto: the gateway is missing seqs above "
                "upto, re-send from upto + 1 at once",
        "mac": _MAC + "; prefix `ack:`",
    },
    "status": {
        "v": _V,
        "terminal": _TERMINAL,
        "state": "`online` (published retained on every connect) or `offline` (the last will, or a clean stop)",
        "time": _TIME + "; absent in the will",
        "head": "the terminal's newest seq (0: empty ledger)",
        "acked": "the terminal's watermark: highest seq acknowledged by the gateway",
        "versions": _VERSIONS + "; the gateway pushes every section whose version differs",
    },
    "auth_request": {
        "v": _V,
        "terminal": _TERMINAL,
        "id": "correlation id, echoed in the response (fresh per request; the Pi terminal: 16 hex digits)",
        "sale_id": _SALE_ID,
        "time": _TIME + " (informational: the gateway decides on its own date)",
        "subject": _SUBJECT,
        "identity": _IDENTITY,
        "cart": "the cart to decide on",
        "card": _CARD,
        "clerk": _CLERK,
        "proof": "the identity proof; without the part its identity needs, the request is refused "
                 "(identity_unproven)",
        "mac": _MAC + "; prefix `authreq:`",
    },
    "cart_line": {
        "product": "product id (registration number or catalogue key)",
        "spec": "pack specification code",
        "packs": "number of packs",
    },
    "auth_response": {
        "v": _V,
        "terminal": _TERMINAL,
        "id": "the request's correlation id",
        "sale_id": "the request's sale_id",
        "status": "`ok`: `decision` follows; `error`: no decision (`code` says why), the terminal decides offline",
        "time": _TIME,
        "auth": "authorization id when the decision consumed quota (approve, partial); the sale record carries it",
        "decision": "the decision (with status ok)",
        "code": "why there is no decision (status error), e.g. `auth_superseded`",
        "replayed": "true: the answer first given to this sale_id, nothing consumed again",
        "used": "the subject's used quota after this decision: category → period → base units",
        "rev": "quota revision these balances are as of",
        "acked": "highest of this terminal's seqs the balances include",
        "subject": "the registry entry, for the terminal's offline cache (only for a subject of the shop's area, "
                   "or whose card was shown)",
        "mac": _MAC + "; prefix `authresp:`",
    },
    "decision": {
        "decision": "`approve` (all lines), `partial` (some), `refuse` (none)",
        "mode": _MODE,
        "date": "the date decided on, YYYY-MM-DD, China Standard Time",
        "codes": _REASONS + ": every code behind the decision",
        "consumption": _CONSUMPTION + "; consumed by the approved lines",
        "items": "one decision per cart line, in cart order",
        "reasons": _REASONS + ": the codes shown to the clerk",
        "action": "what the clerk can do next (docs/policy.md, e.g. `identify`)",
        "periods": "quota category → the period the sale counts in (e.g. `2025`, `2025S1`)",
        "remaining": "quota category → remaining after this decision, base units",
        "policy": "version of the policy function",
        "params_version": "version of the `params` section decided with",
        "catalogue_version": "version of the `catalogue` section decided with",
    },
    "item_decision": {
        "line": "index of the cart line (0-based)",
        "decision": "`approve` or `refuse`",
        "reasons": _REASONS + " for this line",
        "consumption": _CONSUMPTION + " of this line",
        "product": "product id of the line",
        "spec": "pack specification code",
        "packs": "packs asked for",
        "max_packs": "most packs the remaining quota allows",
        "status": "the product's status in the catalogue",
        "amount": "product in base units",
        "unit": "base unit of `amount`",
        "action": "what the clerk can do for this line",
    },
    "subject_entry": {
        "id": _SUBJECT,
        "status": "registry status; only `active` subjects may buy",
        "town": "town (镇街) code",
        "village": "village (村社) code",
        "village_name": "the village's name from the supervision grid",
        "grade": "credit grade (absent: not rated)",
        "name": "the subject's name for the clerk's screen",
        "plots": "registered plots (crop, area, season: docs/policy.md)",
        "permits": "restricted-use permits (ingredients, until: docs/policy.md)",
        "allowances": "quota category → allowance set explicitly, base units",
    },
    "config_manifest": {
        "v": _V,
        "terminal": _TERMINAL,
        "kind": "`manifest`",
        "time": _TIME,
        "sections": "section name → what the gateway holds now",
        "mac": _MAC + "; prefix `config:`",
    },
    "manifest_section": {
        "version": "the section's version (assigned by the gateway; compared for equality only)",
        "digest": _DIGEST,
        "size": "length of the section's canonical text, characters",
    },
    "config_chunk": {
        "v": _V,
        "terminal": _TERMINAL,
        "kind": "`chunk`",
        "time": _TIME,
        "section": "which section",
        "version": "the section's version",
        "digest": _DIGEST + "; the joined chunks must match it",
        "index": "this slice's position, 0-based",
        "count": "number of slices of this version",
        "data": "the slice of the section's canonical text",
        "mac": _MAC + "; prefix `config:`",
    },
    "section_shop": {
        "id": "the shop's id",
        "designated": "designated for restricted-use products",
        "town": "the shop's town code",
        "name": "the shop's name",
    },
    "section_subjects": {
        "subjects": "the entries",
        "town": "the shop's town code",
    },
    "section_balances": {
        "rev": "quota revision",
        "acked": "highest of this terminal's seqs the figures include",
        "used": "subject → category → period → used, base units",
    },
    "section_revocations": {
        "cards": "card numbers that must be refused (card_revoked)",
    },
    "section_gallery": {
        "b64": "base64 of the gallery payload (docs/protocol.md \"The gallery section\")",
        "digest": "SHA-256 of the decoded payload, lowercase hex",
        "size": "decoded payload bytes",
        "subjects": "number of subjects in the payload",
        "rows": "number of encodings in the payload",
    },
}
