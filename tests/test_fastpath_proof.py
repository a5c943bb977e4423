"""The gateway's fast path and its general path agree on records that carry an
identity proof (docs/protocol.md "Identity proof"), and the fast path takes
an honest terminal's records with proofs without falling back: every sale and
refusal the counter writes carries one, so a fallback would be paid on nearly
every record.

The proof is where the record bodies first hold variable-length hex (a card
payload of 2-600 digits, a UID of 8-20), which the fast path's msgspec types
must bound exactly as `protocols.schema` does."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gateway.ingest.fastpath as fp
from gateway.ingest.verify import Batch, check_batch
from protocols import authz, envelope
from tests.records_factory import KEY
from tests.support import quota_fixtures as fx

CARD_PAYLOAD, CARD_UID = fx.issue_card("S1")
ITEMS = [{"product": "PD20080001", "packs": 1}]


def key_for(terminal):
    return KEY if terminal == "T1" else None


def body(rtype: str, proof, identity: str = "card") -> dict:
    if rtype == "sale":
        out = {"subject": "S1", "items": ITEMS, "identity": identity, "mode": "offline", "clerk": "c1"}
    else:
        out = {"items": ITEMS, "reasons": ["identity_unproven"], "clerk": "c1", "subject": "S1",
               "identity": identity, "mode": "offline"}
    out["proof"] = proof
    return out


def signed(rtype: str, body_: dict, seq: int = 1, prev: str = envelope.GENESIS) -> dict:
    """Signed over whatever body it is given, valid or not (as a terminal
    holding its key could)."""
    record = {"v": 1, "terminal": "T1", "seq": seq, "prev": prev, "time": 1764300000000 + seq,
              "type": rtype, "body": body_}
    record["mac"] = envelope.mac(KEY, envelope.signing_bytes(record))
    return record


HONEST = [
    ("sale", {"card": authz.card_proof(CARD_PAYLOAD, CARD_UID)}, "card"),
    ("sale", {"face": authz.face_proof(0.3812, 12, 0.08, True)}, "face"),
    ("sale", {"card": authz.card_proof(CARD_PAYLOAD, CARD_UID), "face": authz.face_proof(0.4, 3)}, "card+face"),
    ("sale", {"override": authz.override_proof("override_other", "读卡器进水，“坏了” \\ \"x\"\n😀")}, "override"),
    ("sale", {"override": authz.override_proof("override_reader_fault")}, "override"),
    ("sale", {}, "card"),
    ("refusal", {"card": authz.card_proof(b"\x01", b"\x04\x01\x02\x03")}, "card"),   # the shortest hex allowed
    ("refusal", {"card": authz.card_proof(bytes(300), bytes(10))}, "card"),          # the longest
    ("refusal", {}, "override"),
]


def honest_batch() -> tuple[list[dict], bytes]:
    records, prev = [], envelope.GENESIS
    for seq, (rtype, proof, identity) in enumerate(HONEST, 1):
        record = envelope.make_record(KEY, "T1", seq, prev, 1764300000000 + seq, rtype, body(rtype, proof, identity))
        prev = envelope.digest(record)
        records.append(record)
    return records, envelope.encode_batch("T1", 0, [envelope.stored_text(r) for r in records])


def test_fast_path_takes_records_with_proofs_without_falling_back(monkeypatch):
    records, payload = honest_batch()

    def no_fallback(*args):
        raise AssertionError("fell back to the general path")

    monkeypatch.setattr(fp, "check_batch", no_fallback)
    fast = fp.check_batch_fast("T1", payload, key_for)
    monkeypatch.undo()
    assert [e.ok for e in fast.entries] == [True] * len(HONEST)
    assert [e.text for e in fast.entries] == [envelope.stored_text(r) for r in records]
    assert fast == check_batch("T1", payload, key_for)


def _one(record: dict) -> bytes:
    return envelope.encode_batch("T1", 0, [envelope.stored_text(record)])


hexish = st.text("0123456789abcdefABx", max_size=610) | st.sampled_from(["", "a", "ab" * 300, "ab" * 300 + "a"])
uidish = st.text("0123456789abcdefA", min_size=6, max_size=22)
texts = st.text(max_size=210) | st.text(st.characters(min_codepoint=0x1F600, max_codepoint=0x1F64F),
                                        min_size=195, max_size=205)
ints = st.integers(-2, 100002) | st.booleans()
parts = st.fixed_dictionaries({}, optional={
    "card": st.fixed_dictionaries({"payload": hexish, "uid": uidish},
                                  optional={"extra": st.just("x")}),
    "face": st.fixed_dictionaries({"distance": ints, "gallery": ints},
                                  optional={"margin": ints, "live": st.booleans() | st.integers(0, 1)}),
    "override": st.fixed_dictionaries({"reason": st.sampled_from(authz.OVERRIDE_REASONS + ("override_x", ""))},
                                      optional={"text": texts}),
    "pin": st.just({}),
})


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["sale", "refusal"]), parts | st.just([]) | st.just("proof"))
def test_fast_path_agrees_with_general_path_on_any_proof(rtype, proof):
    """Hex of every length around the bounds, upper case and stray letters,
    texts around 200 characters (astral ones too), numbers out of range,
    unknown parts: both paths accept or refuse each record alike."""
    payload = _one(signed(rtype, body(rtype, proof)))
    fast, general = fp.check_batch_fast("T1", payload, key_for), check_batch("T1", payload, key_for)
    assert isinstance(general, Batch)
    assert fast == general


@settings(max_examples=200)
@given(st.integers(0, 10_000), st.integers(0, 255))
def test_fast_path_agrees_with_general_path_on_byte_changes_in_records_with_proofs(position, value):
    _, payload = honest_batch()
    changed = bytearray(payload)
    changed[position % len(changed)] = value
    assert fp.check_batch_fast("T1", bytes(changed), key_for) == check_batch("T1", bytes(changed), key_for)


def test_a_proof_is_inside_the_mac():
    records, _ = honest_batch()
    record = dict(records[0], body=dict(records[0]["body"], proof={}))   # the card proof removed after signing
    payload = _one(record)
    fast = fp.check_batch_fast("T1", payload, key_for)
    assert fast == check_batch("T1", payload, key_for) and fast.entries[0].reason == "bad_mac"
