"""The counter's side of the identity proof (issue 15, item 6): each Identity
carries how it was established (the card as read, the face match, the
clerk's reason), checkout sends it with the authorization request, and the
offline path keeps selling to the card in hand. No network: the agent is
never started, and the authorization client's uplink is a recorder."""

from __future__ import annotations

import json

import pytest

from firmware.counter import Cart, CounterError, Identity
from protocols import authz, card, topics
from tests.support import quota_fixtures as fx
from tests.test_offline_counter import KEY, make_agent, sync


@pytest.fixture
def agent(tmp_path):
    a = make_agent(tmp_path)
    sync(a.config_store)
    a.counter.trusted = card.trust_store([bytes.fromhex(fx.registry_public_hex())])
    yield a
    a.stop()


def urea(bags: int) -> Cart:
    cart = Cart()
    cart.add(fx.UREA[0], fx.UREA[1], bags)
    return cart


class RecordingUplink:
    """Connected, publishes nowhere, keeps what the counter sends."""

    def __init__(self, terminal: str):
        self.terminal = terminal
        self.connected = True
        self.sent: list[tuple[str, bytes]] = []

    def publish(self, topic, payload, qos=1):
        self.sent.append((topic, payload))
        return True


def asked(agent, identity: Identity) -> dict:
    """Checkout with a gateway that never answers (so offline), returning the
    authorization request the counter sent first, as the gateway decodes it."""
    uplink = RecordingUplink(agent.terminal)
    agent.counter.auth.uplink = uplink
    agent.counter.deadline_s = 0.05
    outcome = agent.counter.checkout(identity, urea(1))
    assert outcome.mode == "offline"
    [(topic, payload)] = uplink.sent
    assert topic == topics.AUTH_REQ
    return authz.verify_request(authz.decode_request(payload), KEY)


def test_a_card_read_at_the_counter_is_sent_with_its_signed_payload_and_uid(agent):
    payload, uid = fx.issue_card("S1", "CARD-1")
    who = agent.counter.read_card(payload, uid)
    assert who == Identity("S1", "card", "CARD-1")           # the proof is not part of who it is
    assert who.proof == {"card": authz.card_proof(payload, uid)}
    request = asked(agent, who)
    assert request["proof"]["card"] == {"payload": payload.hex(), "uid": uid.hex()} and request["card"] == "CARD-1"
    trusted = card.trust_store([bytes.fromhex(fx.registry_public_hex())])
    assert authz.check_proof(request, trusted, fx.today()).subject_id == "S1"   # what the gateway will find


def test_a_card_verified_by_the_reader_service_carries_its_payload_when_given(agent):
    payload, uid = fx.issue_card("S1", "CARD-1")
    verified = card.verify(payload, uid, agent.counter.trusted, fx.today())
    assert agent.counter.identify_card(verified, payload).proof == {"card": authz.card_proof(payload, uid)}
    assert agent.counter.identify_card(verified).proof is None     # the old call: no proof, offline only


def test_a_face_match_goes_with_its_distance_and_the_gallery_version(agent):
    versions = agent.config_store.versions()

    class Match:
        subject, reason, distance, margin = "S1", None, 0.3812, 0.21

    face = agent.counter.identify_face(Match())
    assert face == Identity("S1", "face")
    assert face.proof == {"face": {"distance": 3812, "gallery": versions.get("gallery", 0), "margin": 2100}}

    class Live:  # the face service's burst result: the match inside, and liveness
        subject, reason = "S1", None
        identification = Match()
        liveness = type("L", (), {"live": True})()

    payload, uid = fx.issue_card("S1", "CARD-1")
    both = agent.counter.identify_face(Live(), with_card=agent.counter.read_card(payload, uid))
    assert (both.method, both.card) == ("card+face", "CARD-1")
    assert set(both.proof) == {"card", "face"} and both.proof["face"]["live"] is True
    request = asked(agent, both)
    assert request["identity"] == "card+face" and request["proof"] == both.proof


def test_an_override_carries_its_reason_and_an_unknown_or_bare_reason_is_refused_at_the_counter(agent):
    who = agent.counter.identify_override("S1", "override_card_damaged")
    assert who.proof == {"override": {"reason": "override_card_damaged"}}
    assert asked(agent, who)["proof"] == who.proof
    noted = agent.counter.identify_override("S1", "override_other", " 卡被水泡坏 ")
    assert noted.proof == {"override": {"reason": "override_other", "text": "卡被水泡坏"}}
    for reason, text in (("because", None), ("override_other", "  ")):
        with pytest.raises(CounterError) as err:
            agent.counter.identify_override("S1", reason, text)
        assert err.value.code == "override_reason_missing"


def test_offline_a_card_in_hand_still_sells_and_an_override_without_reason_does_not(agent):
    sold = agent.counter.checkout(Identity("S1", "card", "CARD-1"), urea(1))   # built by hand: no proof
    assert (sold.approved, sold.mode) == (True, "offline")
    payload, uid = fx.issue_card("S1", "CARD-1")
    assert agent.counter.checkout(agent.counter.read_card(payload, uid), urea(1)).approved
    bare = agent.counter.checkout(agent.counter.identify_override("S1"), urea(1))
    assert (bare.approved, bare.record) == (False, "refusal")
    assert bare.codes == ["identity_unproven", "override_reason_missing"] and bare.action == "identify"
    body = json.loads(agent.ledger.pending(bare.seq - 1, 1)[0][1])["body"]
    assert body["identity"] == "override" and body["reasons"] == bare.codes
    given = agent.counter.checkout(agent.counter.identify_override("S1", "override_reader_fault"), urea(1))
    assert (given.approved, given.mode) == (True, "offline")
