"""Offline sales whose claimed identity is not proven.

Online, the gateway refuses a request whose identity proof fails
(`identity_unproven`, gateway/enforcement/authz.py). Offline the terminal decides alone,
so a terminal could record `identity: "card"` with no card in hand; the sale
record carries the proof the counter had (`proof`, docs/protocol.md), and when
the record arrives the engine checks it the same way as a request
(`gateway.enforcement.authz.check_identity`). A record that fails is stored all the same:
it is an authentic, signed account of what the terminal did, and refusing it
would only hide it. It becomes a violation for an inspector instead, once per
record.

Which records are checked, and why (the decision for records from before the
field existed, which must not flood the queue):
- sales only: a refusal sold nothing;
- not an online sale with an authorization id: its proof was checked when it
  was asked for (an online sale without one is not what a counter writes);
- only records that carry `proof`. The counter writes it into every sale and
  refusal, `{}` when the identity had none, so a missing field means a record
  written before the field existed (or by a terminal that has not been
  updated), and `{}` with a card claim is an unproven claim. A district whose
  terminals all write the field sets `[proof] missing = "unproven"`, and a sale
  without it is then checked as if it carried `{}`.
"""

from __future__ import annotations

from gateway.supervision.rules import Event, Finding

CODE = "identity_unproven_offline"


def claim(event: Event, cfg: dict) -> dict | None:
    """What `gateway.enforcement.authz.check_identity` reads of a sale to check (subject,
    identity, card, proof), or None when the record is not checked (above)."""
    body = event.body
    if event.type != "sale" or not body.get("identity") or not body.get("subject"):
        return None
    if body.get("mode") == "online" and body.get("auth"):
        return None
    if "proof" not in body and cfg["proof"]["missing"] != "unproven":
        return None
    out = {"subject": body["subject"], "identity": body["identity"], "proof": body.get("proof") or {}}
    if body.get("card") is not None:
        out["card"] = body["card"]
    return out


def identity_unproven_offline(event: Event, code: str | None, detail: str = "") -> list[Finding]:
    """`code`, `detail`: why checking the sale's claim failed (the reason
    code the clerk would have seen online, e.g. `card_subject_mismatch`), or
    None when it held. One finding per record."""
    if code is None:
        return []
    proof = event.body.get("proof")
    return [Finding(CODE, f"{CODE}:{event.key()}", event.subject, event.shop, event.terminal, event.seq,
                    {"identity": event.identity, "mode": event.body.get("mode"), "reason": code,
                     "detail": detail[:300], "card": event.card,
                     "proof": sorted(proof) if isinstance(proof, dict) else None})]
