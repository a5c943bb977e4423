"""Issue 15, item 6: an authorization must prove the identity it claims.

With only its own key a terminal got approvals for a subject of another town
claiming `identity: "card"` with no card present, and read the registry
entries of other towns. Here, without a broker: the proof's checks
(protocols/authz.py `check_proof`), the gateway's authorization worker
(gateway/enforcement/authz.py) deciding real signed requests against a real store, and
the config push carrying only the subjects a shop serves."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from gateway.enforcement import faces, quota, registry
from gateway.enforcement.authz import AuthService
from gateway.enforcement.configpush import ConfigPusher
from gateway.enforcement.fleet import provision
from gateway.store import Store
from protocols import authz, card, configsync
from tests.support import quota_fixtures as fx

KEY = bytes(range(32))
NOW = 1_790_000_000_000  # 2026-09-21 (CST)
TODAY = authz.local_date(NOW)
YEAR = TODAY[:4]
CART = [{"product": fx.UREA[0], "spec": fx.UREA[1], "packs": 2}]   # 46 kg N


# ---------------------------------------------------------------- the proof alone

def trusted():
    return card.trust_store([bytes.fromhex(fx.registry_public_hex())])


def claim(identity="card", subject="S1", proof=None, card_no=None) -> dict:
    """A request as the gateway sees it after its shape and MAC checks."""
    payload = authz.encode_request(KEY, "T1", "r1", "T1-1", NOW, subject, identity, CART, card=card_no, proof=proof)
    return authz.verify_request(authz.decode_request(payload), KEY)


def shown(subject="S1", **kw) -> dict:
    payload, uid = fx.issue_card(subject, **kw)
    return {"card": authz.card_proof(payload, uid)}


def stranger_key():
    """A signing key that is not the registry's."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    return Ed25519PrivateKey.generate()


def face_line(subject: str, rows: list) -> str:
    """One line of `gateway faces import` (python -m firmware face encode)."""
    return json.dumps({"subject": subject, "model": "dlib_face_recognition_resnet_model_v1/5pt", "encodings": rows})


def altered(subject: str) -> dict:
    """A card proof with one bit of the signature flipped."""
    payload, uid = fx.issue_card(subject)
    return {"card": authz.card_proof(payload[:-1] + bytes([payload[-1] ^ 1]), uid)}


def rejected(request, revoked=()) -> str:
    try:
        authz.check_proof(request, trusted(), TODAY, revoked)
    except authz.Invalid as err:
        return err.code
    return "ok"


def test_a_card_proof_names_the_claimed_subject_signed_valid_and_not_revoked():
    assert rejected(claim("card", "S1", shown("S1"), card_no="C-S1")) == "ok"
    assert authz.check_proof(claim("card", "S1", shown("S1")), trusted(), TODAY).card_no == "C-S1"
    assert rejected(claim("card", "S1")) == "identity_unproven"                        # no card at all
    assert rejected(claim("card", "S1", shown("S2"))) == "card_subject_mismatch"       # someone else's card
    assert rejected(claim("card", "S1", shown("S1"), card_no="C-OTHER")) == "card_subject_mismatch"
    forged, uid = fx.issue_card("S1", key=stranger_key())
    assert rejected(claim("card", "S1", {"card": authz.card_proof(forged, uid)})) == "card_unknown"  # not the registry
    payload, uid = fx.issue_card("S1")
    flipped = payload[:-1] + bytes([payload[-1] ^ 1])
    assert rejected(claim("card", "S1", {"card": authz.card_proof(flipped, uid)})) == "card_tampered"
    assert rejected(claim("card", "S1", {"card": authz.card_proof(payload, b"\x04\x01\x02\x03\x04\x05\x06")})) \
        == "card_copied"                                                                # UID does not match
    assert rejected(claim("card", "S1", shown("S1", expires="2026-01-31"))) == "card_expired"
    assert rejected(claim("card", "S1", shown("S1")), revoked={"C-S1"}) == "card_revoked"
    odd = {"card": {"payload": authz.card_proof(payload, uid)["payload"][:-1], "uid": uid.hex()}}
    assert rejected(claim("card", "S1", odd)) == "card_tampered"


def test_card_and_face_needs_both_and_a_face_needs_a_close_match_on_a_gallery():
    face = {"face": authz.face_proof(0.41, 77, margin=0.2)}
    assert face["face"] == {"distance": 4100, "gallery": 77, "margin": 2000}
    assert rejected(claim("face", "S1", face)) == "ok"
    assert rejected(claim("face", "S1")) == "identity_unproven"
    assert rejected(claim("face", "S1", {"face": authz.face_proof(0.7, 77)})) == "identity_unproven"
    assert rejected(claim("face", "S1", {"face": authz.face_proof(0.3, 0)})) == "identity_unproven"
    assert rejected(claim("card+face", "S1", shown("S1"))) == "identity_unproven"
    assert rejected(claim("card+face", "S1", face)) == "identity_unproven"
    assert rejected(claim("card+face", "S1", dict(shown("S1"), **face))) == "ok"


def test_an_override_needs_a_reason_from_the_list_and_other_needs_a_note():
    assert rejected(claim("override", "S1")) == "override_reason_missing"
    assert rejected(claim("override", "S1", {"override": authz.override_proof("override_reader_fault")})) == "ok"
    assert rejected(claim("override", "S1", {"override": authz.override_proof("override_other")})) \
        == "override_reason_missing"
    assert rejected(claim("override", "S1", {"override": authz.override_proof("override_other", "台风停电")})) == "ok"
    with pytest.raises(authz.Invalid) as err:   # not on the list: the terminal never sends it
        claim("override", "S1", {"override": {"reason": "because"}})
    assert err.value.code == "schema_invalid"
    for code in ("identity_unproven", "card_subject_mismatch", "override_reason_missing") + authz.OVERRIDE_REASONS:
        assert authz.reasons.text(code, "zh") != code and authz.reasons.text(code, "en") != code


def test_the_proof_is_part_of_the_signed_request():
    message = json.loads(authz.encode_request(KEY, "T1", "r1", "T1-1", NOW, "S1", "card", CART, proof=shown("S2")))
    message["proof"] = shown("S1")   # a broker operator swapping the card in
    with pytest.raises(authz.Invalid) as err:
        authz.verify_request(authz.decode_request(json.dumps(message).encode()), KEY)
    assert err.value.code == "bad_mac"


def test_identity_proof_matches_under_micropython(micropython):
    payload, uid = fx.issue_card("S1")
    expected = authz.encode_request(KEY, "T1", "r1", "T1-1", 5, "S1", "card", CART, card="C-S1",
                                    proof={"card": authz.card_proof(payload, uid)}).decode()
    script = (
        "from binascii import unhexlify as h\n"
        "from protocols import authz, card\n"
        "key = bytes(range(32))\n"
        "cart = [{'product': %r, 'spec': %r, 'packs': 2}]\n"
        "proof = {'card': authz.card_proof(h(%r), h(%r))}\n"
        "p = authz.encode_request(key, 'T1', 'r1', 'T1-1', 5, 'S1', 'card', cart, card='C-S1', proof=proof)\n"
        "print(p.decode() == EXPECTED)\n"
        "m = authz.verify_request(authz.decode_request(p), key)\n"
        "trusted = card.trust_store([h(%r)])\n"
        "print(authz.check_proof(m, trusted, '2026-09-21').subject_id)\n"
        "m['subject'] = 'S2'\n"
        "try:\n"
        "    authz.check_proof(m, trusted, '2026-09-21')\n"
        "except authz.Invalid as e:\n"
        "    print(e.code)\n"
        "print(authz.face_proof(0.41, 7)['distance'])\n"
    ) % (fx.UREA[0], fx.UREA[1], payload.hex(), uid.hex(), fx.registry_public_hex())
    result = micropython("EXPECTED = %r\n" % expected + script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "S1", "card_subject_mismatch", "4100"]


# ---------------------------------------------------------------- the gateway deciding

@pytest.fixture
def gateway(tmp_path):
    """Terminal T1 at a shop of town 1, T2 at a shop of town 2; S1 lives in town
    1, S2 and S3 in town 2; the test registry's key trusted, card C-LOST revoked."""
    store = Store(tmp_path / "gw.db")
    for name in ("T1", "T2"):
        provision(store, name, f"shop-{name}", 0, key_hex=KEY.hex())
    fx.add_shops(store.path, {"shop-T1": (fx.TOWN, False), "shop-T2": (fx.OTHER_TOWN, False)})
    registry.set_section(store.conn, configsync.PARAMS, fx.params(), NOW)
    registry.set_section(store.conn, configsync.REVOCATIONS, {"cards": ["C-LOST"]}, NOW)
    registry.import_subjects(store.conn, fx.subjects({"S1": 10}) + fx.subjects({"S2": 10, "S3": 10}, fx.OTHER_TOWN),
                             NOW)
    registry.add_keys(store.conn, [bytes.fromhex(fx.registry_public_hex())], NOW)
    service = AuthService(store, lambda terminal, payload: None, quota.ConfigCache(refresh_s=0), wall_ms=lambda: NOW,
                          key_for=lambda terminal: KEY)
    yield SimpleNamespace(store=store, conn=store.conn, service=service, n=[0])
    store.close()


def ask(gw, subject, identity="card", proof=None, terminal="T1", card_no=None, sale_id=None) -> dict:
    """One signed request through the worker's decision and commit; the decoded answer."""
    gw.n[0] += 1
    sale_id = sale_id or f"{terminal}-{gw.n[0]}"
    payload = authz.encode_request(KEY, terminal, f"r{gw.n[0]}", sale_id, NOW, subject, identity, CART,
                                   card=card_no, proof=proof)
    request = authz.verify_request(authz.decode_request(payload), KEY)
    [(to, answer)] = gw.service._decide([(terminal, request, KEY)])
    assert to == terminal
    return authz.decode_response(answer, KEY)


def used_n(gw, subject) -> int:
    return quota.used_of(gw.conn, subject).get("fert_n", {}).get(YEAR, 0)


def consumed(gw) -> int:
    return gw.conn.execute("SELECT count(*) FROM quota_moves").fetchone()[0]


def test_a_card_claimed_without_its_card_is_refused_and_consumes_nothing(gateway):
    """The issue's case: a town-1 terminal, a town-2 subject, `identity: card`,
    no card. Refused, nothing consumed, and the answer holds no registry entry."""
    answer = ask(gateway, "S2", card_no="C-S2")
    assert answer["status"] == "ok" and answer["decision"]["decision"] == "refuse"
    assert answer["decision"]["codes"] == ["identity_unproven"] and answer["decision"]["action"] == "identify"
    assert "auth" not in answer and "subject" not in answer and "used" not in answer
    assert used_n(gateway, "S2") == 0 and consumed(gateway) == 0
    assert gateway.service.stats.unproven == 1


@pytest.mark.parametrize("why, proof, card_no, code", [
    ("another subject's card", lambda: shown("S3"), "C-S3", "card_subject_mismatch"),
    ("a signature by another key", lambda: {"card": authz.card_proof(*fx.issue_card("S2", key=stranger_key()))},
     "C-S2", "card_unknown"),
    ("an altered payload", lambda: altered("S2"), "C-S2", "card_tampered"),
    ("an expired card", lambda: shown("S2", expires="2026-09-20"), "C-S2", "card_expired"),
    ("a revoked card", lambda: shown("S2", card_no="C-LOST"), "C-LOST", "card_revoked"),
    ("a UID that is not the card's", lambda: {"card": authz.card_proof(fx.issue_card("S2")[0], b"\x04\x09\x09\x09")},
     "C-S2", "card_copied"),
])
def test_a_card_proof_that_fails_is_refused_with_its_reason_and_consumes_nothing(gateway, why, proof, card_no, code):
    answer = ask(gateway, "S2", proof=proof(), card_no=card_no)
    assert answer["decision"]["decision"] == "refuse", why
    assert answer["decision"]["codes"] == ["identity_unproven", code], why
    assert "subject" not in answer and used_n(gateway, "S2") == 0 and consumed(gateway) == 0


def test_a_proper_card_is_approved_and_brings_that_subjects_entry_only(gateway):
    answer = ask(gateway, "S2", proof=shown("S2"), card_no="C-S2")
    assert answer["decision"]["decision"] == "approve" and answer["auth"]
    assert used_n(gateway, "S2") == 2 * fx.UREA_N_PER_BAG
    assert answer["subject"]["id"] == "S2" and answer["subject"]["town"] == fx.OTHER_TOWN  # enough for the panel
    assert answer["used"]["fert_n"][YEAR] == 2 * fx.UREA_N_PER_BAG
    # a repeated request gets its first answer without consuming again
    again = ask(gateway, "S2", proof=shown("S2"), card_no="C-S2", sale_id=f"T1-{gateway.n[0]}")
    assert again["replayed"] is True and used_n(gateway, "S2") == 2 * fx.UREA_N_PER_BAG


def test_an_override_needs_its_reason_and_is_counted_per_shop(gateway):
    refused = ask(gateway, "S1", "override")
    assert refused["decision"]["codes"] == ["identity_unproven", "override_reason_missing"]
    assert used_n(gateway, "S1") == 0
    note = ask(gateway, "S1", "override", {"override": authz.override_proof("override_other")})
    assert note["decision"]["codes"] == ["identity_unproven", "override_reason_missing"]
    for _ in range(2):
        sold = ask(gateway, "S1", "override", {"override": authz.override_proof("override_reader_fault")})
        assert sold["decision"]["decision"] == "approve"
    ask(gateway, "S2", "override", {"override": authz.override_proof("override_card_lost")}, terminal="T2")
    assert gateway.service.stats.overrides == {"shop-T1": 2, "shop-T2": 1}
    assert used_n(gateway, "S1") == 4 * fx.UREA_N_PER_BAG
    assert sold["subject"]["id"] == "S1"            # its own town's subject: the entry as before


def test_an_override_for_a_subject_elsewhere_does_not_show_the_registry_entry(gateway):
    answer = ask(gateway, "S2", "override", {"override": authz.override_proof("override_card_damaged")})
    assert answer["decision"]["decision"] == "approve"
    assert "subject" not in answer and "used" not in answer


def test_a_face_match_proves_only_an_enrolled_subject_of_the_shops_area(gateway):
    faces.import_faces(gateway.conn, faces.parse_import(face_line("S1", [[0.1] * 128]) + "\n"
                                                        + face_line("S2", [[0.2] * 128]), "f"), NOW)
    match = {"face": authz.face_proof(0.38, 5)}
    assert ask(gateway, "S1", "face", match)["decision"]["decision"] == "approve"
    elsewhere = ask(gateway, "S2", "face", match)       # enrolled, but not in T1's gallery
    assert elsewhere["decision"]["codes"] == ["identity_unproven"] and used_n(gateway, "S2") == 0
    assert ask(gateway, "S2", "face", match, terminal="T2")["decision"]["decision"] == "approve"
    assert ask(gateway, "S3", "face", match, terminal="T2")["decision"]["codes"] == ["identity_unproven"]
    assert ask(gateway, "S1", "face")["decision"]["codes"] == ["identity_unproven"]


def test_a_gateway_that_trusts_no_registry_key_refuses_every_card(gateway):
    registry.remove_keys(gateway.conn, [bytes.fromhex(fx.registry_public_hex())])
    answer = ask(gateway, "S1", proof=shown("S1"), card_no="C-S1")
    assert answer["decision"]["codes"] == ["identity_unproven", "card_unknown"] and used_n(gateway, "S1") == 0


# ---------------------------------------------------------------- what a terminal is pushed

def subjects_pushed(store, terminal) -> list[str]:
    pusher = ConfigPusher(store.path, lambda *a: None, lambda t: KEY, wall_ms=lambda: NOW)
    version, text = pusher.sections(terminal)[configsync.SUBJECTS]
    return [entry["id"] for entry in json.loads(text)["subjects"]]


def test_a_terminal_is_pushed_only_the_registry_entries_of_its_shops_area(gateway):
    assert subjects_pushed(gateway.store, "T1") == ["S1"]
    assert subjects_pushed(gateway.store, "T2") == ["S2", "S3"]
    # asking about town-2 subjects, with and without their card, brings no town-2 entry into T1's push
    ask(gateway, "S2", proof=shown("S2"), card_no="C-S2")
    ask(gateway, "S3", card_no="C-S3")
    ask(gateway, "S3", "override", {"override": authz.override_proof("override_card_lost")})
    assert subjects_pushed(gateway.store, "T1") == ["S1"]


def test_a_shop_serves_its_village_too():
    assert registry.serves({"town": "T", "village": "V"}, {"town": "T"})
    assert registry.serves({"town": "T", "village": "V"}, {"town": "X", "village": "V"})
    assert not registry.serves({"town": "T", "village": "V"}, {"town": "X", "village": "W"})
    assert not registry.serves({}, {"town": "T"}) and not registry.serves({"town": "T"}, {})


def test_registry_keys_are_added_listed_and_removed_with_the_cli(tmp_path):
    from tests.support.quota_district import gateway_cli
    db = str(tmp_path / "gw.db")
    key = fx.registry_public_hex()
    assert "1 registry key(s) trusted" in gateway_cli("subjects", "keys", "add", key, key, "--db", db).stdout
    assert gateway_cli("subjects", "keys", "list", "--db", db).stdout.split() == [key]
    assert "0 registry key(s)" in gateway_cli("subjects", "keys", "remove", key, "--db", db).stdout
    with pytest.raises(registry.RegistryError):
        registry.parse_key("abc")
