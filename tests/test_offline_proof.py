"""Offline sales carry the identity proof, and the gateway checks it when the
record arrives.

Online, a request must prove the identity it claims (tests/test_identity_proof.py).
Offline the terminal decides alone, so the sale and refusal records carry the
same proof (`proof`), and the gateway runs the same check on an offline sale
(`gateway.enforcement.authz.check_identity`): a claim that does not hold is stored all the
same (a signed record of what the terminal did) and raises
`identity_unproven_offline` for an inspector, once per record.

Here the terminal is a real agent that is never started (every checkout is
offline), and its ledger rows go, as the uplink sends them, into a real
gateway store through ingest, the quota ledger and the supervision rules."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from firmware.counter import Cart, Identity
from gateway.enforcement import faces, quota, registry
from gateway.enforcement.fleet import provision
from gateway.supervision.rules import config, engine, make_event
from gateway.store import Store
from protocols import authz, card, configsync, envelope
from tests.support import quota_fixtures as fx
from tests.support.inline_ingest import InlineIngest as Ingest
from tests.test_offline_counter import KEY, make_agent, sync

TERMINAL, SHOP = "T9", "shop-T9"
CODE = "identity_unproven_offline"


@pytest.fixture
def world(tmp_path):
    """Terminal T9 of shop-T9 in town 1 (offline: never started), S1 and S2
    of town 1 in its registry, and a gateway that trusts the test registry
    and has revoked card C-LOST."""
    now = int(time.time() * 1000)
    agent = make_agent(tmp_path)
    sync(agent.config_store)
    agent.counter.trusted = card.trust_store([bytes.fromhex(fx.registry_public_hex())])
    store = Store(tmp_path / "gw.db")
    provision(store, TERMINAL, SHOP, 0, key_hex=KEY.hex())
    fx.add_shops(store.path, {SHOP: (fx.TOWN, False)})
    registry.set_section(store.conn, configsync.PARAMS, fx.params(), now)
    registry.set_section(store.conn, configsync.REVOCATIONS, {"cards": ["C-LOST"]}, now)
    registry.import_subjects(store.conn, fx.subjects({"S1": 10, "S2": 8}), now)
    registry.add_keys(store.conn, [bytes.fromhex(fx.registry_public_hex())], now)
    ingest = Ingest(store, lambda *a: None)
    ingest.follow("quota", quota.RecordApplier(quota.ConfigCache(refresh_s=0)))
    hook = engine.RecordHook(config.load())
    ingest.follow("supervision", hook)
    ingest.start()
    yield SimpleNamespace(agent=agent, store=store, ingest=ingest, hook=hook, sent=[0])
    ingest.stop()
    store.close()
    agent.stop()


def urea(bags: int = 1) -> Cart:
    cart = Cart()
    cart.add(fx.UREA[0], fx.UREA[1], bags)
    return cart


def record_of(world, seq: int) -> dict:
    [(number, text)] = world.agent.ledger.pending(seq - 1, 1)
    assert number == seq
    return json.loads(text)


def upload(world) -> None:
    """What the uplink sends: the ledger rows not sent yet, in one batch."""
    rows = world.agent.ledger.pending(world.sent[0], 1000)
    payload = envelope.encode_batch(TERMINAL, world.sent[0], [text for _, text in rows])
    world.ingest.submit_batch(f"agri/v1/t/{TERMINAL}/up", TERMINAL, payload)
    assert world.ingest.drain(10)
    world.sent[0] = rows[-1][0]


def stored(world) -> list[int]:
    return [r[0] for r in world.store.conn.execute("SELECT seq FROM records WHERE terminal = ? ORDER BY seq",
                                                   [TERMINAL])]


def unproven(world) -> list[tuple]:
    """(seq, subject, reason) of each identity_unproven_offline violation."""
    return [(seq, subject, json.loads(detail)["reason"]) for seq, subject, detail in world.store.conn.execute(
        "SELECT seq, subject, detail FROM violations WHERE code = ? ORDER BY seq", [CODE])]


def sell(world, identity: Identity, bags: int = 1):
    outcome = world.agent.counter.checkout(identity, urea(bags))
    assert outcome.mode == "offline"
    return outcome


# ---------------------------------------------------------------- what the terminal records

def test_an_offline_card_sale_records_the_cards_payload_and_uid(world):
    payload, uid = fx.issue_card("S1")
    outcome = sell(world, world.agent.counter.read_card(payload, uid))
    assert outcome.approved and outcome.record == "sale"
    body = record_of(world, outcome.seq)["body"]
    assert body["mode"] == "offline" and body["identity"] == "card" and body["card"] == "C-S1"
    assert body["proof"] == {"card": {"payload": payload.hex(), "uid": uid.hex()}}


def test_an_override_record_carries_its_reason_and_a_refusal_its_proof(world):
    counter = world.agent.counter
    sold = sell(world, counter.identify_override("S1", "override_other", "读卡器坏了"))
    body = record_of(world, sold.seq)["body"]
    assert body["identity"] == "override"
    assert body["proof"] == {"override": {"reason": "override_other", "text": "读卡器坏了"}}
    refused = sell(world, counter.identify_override("S1"))            # no reason: refused offline
    assert refused.record == "refusal"
    assert record_of(world, refused.seq)["body"]["proof"] == {}       # recorded: on no proof at all
    payload, uid = fx.issue_card("S1")
    too_much = sell(world, counter.read_card(payload, uid), bags=40)  # past the offline cap: refused
    assert too_much.record == "refusal"
    assert record_of(world, too_much.seq)["body"]["proof"] == {"card": authz.card_proof(payload, uid)}


def test_an_identity_without_proof_is_recorded_with_an_empty_proof(world):
    outcome = sell(world, Identity("S1", "card", "C-S1"))
    assert outcome.approved   # the counter's own policy sells to the card it was handed...
    assert record_of(world, outcome.seq)["body"]["proof"] == {}   # ...and the ledger says it saw none


# ---------------------------------------------------------------- what the gateway makes of it

def test_an_offline_card_sale_is_stored_applied_and_raises_nothing(world):
    payload, uid = fx.issue_card("S1")
    outcome = sell(world, world.agent.counter.read_card(payload, uid))
    upload(world)
    assert stored(world) == [outcome.seq]
    [text] = [r[0] for r in world.store.conn.execute("SELECT record FROM records WHERE terminal = ?", [TERMINAL])]
    assert json.loads(text)["body"]["proof"] == {"card": authz.card_proof(payload, uid)}   # checked, and kept
    assert unproven(world) == [] and world.hook.errors == 0
    used = quota.used_of(world.store.conn, "S1")["fert_n"]
    assert sum(used.values()) == fx.UREA_N_PER_BAG                 # the offline sale counted


def test_an_offline_card_claim_without_the_card_is_stored_and_raises_one_violation(world):
    outcome = sell(world, Identity("S1", "card", "C-S1"))
    for _ in range(3):                                             # delivered again: still one
        world.sent[0] = 0
        upload(world)
    assert stored(world) == [outcome.seq]
    assert unproven(world) == [(outcome.seq, "S1", "identity_unproven")]
    row = world.store.conn.execute("SELECT shop, terminal, detail FROM violations WHERE code = ?", [CODE]).fetchone()
    detail = json.loads(row[2])
    assert row[:2] == (SHOP, TERMINAL)
    assert detail["identity"] == "card" and detail["mode"] == "offline" and detail["card"] == "C-S1"
    assert sum(quota.used_of(world.store.conn, "S1")["fert_n"].values()) == fx.UREA_N_PER_BAG  # still counted


def test_a_proof_of_another_subjects_card_is_stored_and_raises_the_violation(world):
    s2_card = {"card": authz.card_proof(*fx.issue_card("S2"))}
    outcome = sell(world, Identity("S1", "card", "C-S2", s2_card))
    upload(world)
    assert stored(world) == [outcome.seq]
    assert unproven(world) == [(outcome.seq, "S1", "card_subject_mismatch")]


@pytest.mark.parametrize("why, shown, code", [
    ("revoked", lambda: fx.issue_card("S1", "C-LOST"), "card_revoked"),
    ("signed by a stranger", lambda: fx.issue_card("S1", key=_stranger()), "card_unknown"),
    ("copied onto another card", lambda: (fx.issue_card("S1")[0], b"\x04\x01\x02\x03\x04\x05\x06"), "card_copied"),
])
def test_an_offline_card_that_the_gateway_would_refuse_online_raises_the_violation(world, why, shown, code):
    payload, uid = shown()
    body = {"subject": "S1", "items": [{"product": fx.UREA[0], "spec": fx.UREA[1], "packs": 1}],
            "identity": "card", "mode": "offline", "clerk": "c1", "card": "C-S1",
            "proof": {"card": authz.card_proof(payload, uid)}}
    seq = world.agent.record("sale", body).seq                     # as a terminal that skipped its checks
    upload(world)
    assert stored(world) == [seq]
    assert unproven(world) == [(seq, "S1", code)]


def _stranger():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    return Ed25519PrivateKey.from_private_bytes(bytes(range(200, 232)))


def written(world, identity: str, proof_: dict | None, mode: str = "offline", **extra) -> int:
    """A sale written into the ledger as the terminal's own code writes it."""
    body = {"subject": "S1", "items": [{"product": fx.UREA[0], "spec": fx.UREA[1], "packs": 1}],
            "identity": identity, "mode": mode, "clerk": "c1", **extra}
    if proof_ is not None:
        body["proof"] = proof_
    return world.agent.record("sale", body).seq


def test_a_face_match_offline_holds_only_for_an_enrolled_subject_of_the_shops_area(world):
    now = int(time.time() * 1000)
    line = json.dumps({"subject": "S1", "model": "dlib_face_recognition_resnet_model_v1/5pt",
                       "encodings": [[0.1] * 128]})
    faces.import_faces(world.store.conn, faces.parse_import(line, "f"), now)
    match = {"face": authz.face_proof(0.38, 5)}
    good = written(world, "face", match)
    far = written(world, "face", {"face": authz.face_proof(0.75, 5)})     # above dlib's tolerance
    no_gallery = written(world, "face", {"face": authz.face_proof(0.38, 0)})
    upload(world)
    assert unproven(world) == [(far, "S1", "identity_unproven"), (no_gallery, "S1", "identity_unproven")]
    assert good not in [seq for seq, _, _ in unproven(world)]
    not_enrolled = written(world, "face", match, subject="S2")
    upload(world)
    assert unproven(world)[-1] == (not_enrolled, "S2", "identity_unproven")


def test_an_override_without_reason_raises_the_violation_and_still_counts_as_an_override(world):
    cfg = config.load()
    seqs = [written(world, "override", {}) for _ in range(cfg["override"]["min_sales"])]
    upload(world)
    assert [seq for seq, _, _ in unproven(world)] == seqs
    assert {reason for _, _, reason in unproven(world)} == {"override_reason_missing"}
    rate = world.store.conn.execute("SELECT seq FROM violations WHERE code = 'override_rate_high'").fetchall()
    assert rate == [(seqs[-1],)]      # ten overrides out of ten sales: the override-rate rule counted each


def test_records_from_before_the_field_are_not_checked_unless_the_district_says_so(world):
    from gateway.supervision.rules import proof
    legacy = written(world, "card", None, card="C-S1")             # no `proof` at all: an older terminal's
    online = written(world, "card", {}, mode="online", auth="A7")  # authorized: its proof was checked then
    upload(world)
    assert unproven(world) == []
    strict = config.load(overrides={"proof": {"missing": "unproven"}})
    events = {seq: make_event(TERMINAL, seq, "sale", 0, 0, record_of(world, seq)["body"], SHOP, 480)
              for seq in (legacy, online)}
    assert proof.claim(events[legacy], config.load()) is None
    assert proof.claim(events[legacy], strict) == {"subject": "S1", "identity": "card", "card": "C-S1", "proof": {}}
    assert proof.claim(events[online], strict) is None
    online_without_auth = written(world, "card", {}, mode="online")   # online, yet no authorization id
    upload(world)
    assert unproven(world) == [(online_without_auth, "S1", "identity_unproven")]


def test_the_proof_rule_is_a_pure_function_with_a_stable_code_and_a_dedup_key_per_record():
    from gateway.supervision.rules import proof
    body = {"subject": "S1", "identity": "card", "mode": "offline", "card": "C1", "proof": {}, "items": []}
    event = make_event("T1", 7, "sale", 1764300000000, 1764300001000, body, "A", 480)
    assert proof.claim(event, config.load()) == {"subject": "S1", "identity": "card", "card": "C1", "proof": {}}
    [finding] = proof.identity_unproven_offline(event, "identity_unproven", "card claimed without card proof")
    assert (finding.code, finding.dedup, finding.subject, finding.shop, finding.seq) == (
        CODE, f"{CODE}:T1:7", "S1", "A", 7)
    assert finding.detail["reason"] == "identity_unproven" and finding.detail["proof"] == []
    assert proof.identity_unproven_offline(event, None) == []
    refusal = make_event("T1", 8, "refusal", 1764300000000, 1764300001000, dict(body, reasons=["x"]), "A", 480)
    assert proof.claim(refusal, config.load()) is None


def test_the_proof_setting_is_checked_at_load(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text('[proof]\nmissing = "sometimes"\n', "utf-8")
    with pytest.raises(config.ConfigError, match="proof.missing"):
        config.load(path)
    path.write_text('[proof]\nmissing = "unproven"\n', "utf-8")
    assert config.load(path)["proof"]["missing"] == "unproven"
