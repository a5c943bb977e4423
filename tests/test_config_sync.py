"""Config sync gateway -> terminals: versioned, chunked, MACed sections on the
retained config topic; terminals persist and report what they run."""

from __future__ import annotations

import json

import pytest

from protocols import catalogue, configsync
from simulator.processes import wait_for
from tests.support import quota_fixtures as fx
from tests.support.quota_district import QuotaDistrict, gateway_cli

KEY = bytes(range(32))


# ---------------------------------------------------------------- the messages

def chunks_of(text: str, chunk_chars: int = 1000, key: bytes = KEY) -> list[dict]:
    return [configsync.decode(p, key) for p in
            configsync.encode_chunks(key, "T1", 1, "catalogue", 9, text, chunk_chars=chunk_chars)]


def test_large_section_is_chunked_and_reassembled_in_any_order():
    text = configsync.section_text(catalogue.load())
    parts = chunks_of(text)
    assert len(parts) > 5
    assembler = configsync.Assembler()
    results = [assembler.add(m) for m in reversed(parts)]
    assert results[:-1] == [None] * (len(parts) - 1)
    name, version, content = results[-1]
    assert (name, version) == ("catalogue", 9) and content == catalogue.load()


def test_altered_chunk_fails_its_mac_and_a_wrong_digest_is_refused():
    payload = configsync.encode_chunks(KEY, "T1", 1, "revocations", 2, '{"cards":[]}')[0]
    message = json.loads(payload)
    message["data"] = '{"cards":["X"]}'  # a broker operator un-revoking nothing, revoking X
    forged = json.dumps(message).encode()
    with pytest.raises(configsync.Invalid) as err:
        configsync.decode(forged, KEY)
    assert err.value.code == "bad_mac"
    with pytest.raises(configsync.Invalid) as err:
        configsync.decode(payload, bytes(32))  # another terminal's key
    assert err.value.code == "bad_mac"
    message = configsync.decode(payload, KEY)
    message["digest"] = "0" * 64
    with pytest.raises(configsync.Invalid) as err:
        configsync.Assembler().add(message)
    assert err.value.code == "config_digest_mismatch"


def test_a_newer_version_discards_a_half_received_older_one():
    old = chunks_of(configsync.section_text(catalogue.load()))
    assembler = configsync.Assembler()
    assembler.add(old[0])
    new = [configsync.decode(p, KEY) for p in configsync.encode_chunks(KEY, "T1", 1, "catalogue", 10,
                                                                        configsync.section_text(catalogue.load()))]
    out = None
    for m in new:
        out = assembler.add(m)
    assert out[1] == 10


def test_malformed_section_content_is_refused():
    payload = configsync.encode_chunks(KEY, "T1", 1, "params", 3, configsync.section_text({"categories": 5}))[0]
    with pytest.raises(configsync.Invalid) as err:
        configsync.Assembler().add(configsync.decode(payload, KEY))
    assert err.value.code == "config_invalid"


def test_config_messages_run_under_micropython(micropython):
    script = (
        "from protocols import configsync\n"
        "key = bytes(range(32))\n"
        "text = configsync.section_text({'cards': ['C%d' % i for i in range(300)]})\n"
        "parts = configsync.encode_chunks(key, 'T1', 1, 'revocations', 4, text, 500)\n"
        "a = configsync.Assembler()\n"
        "out = None\n"
        "for p in parts:\n"
        "    out = a.add(configsync.decode(p, key))\n"
        "print(len(parts), out[0], out[1], len(out[2]['cards']))\n"
        "print(parts[0].decode() == EXPECTED)\n"
    )
    expected = configsync.encode_chunks(KEY, "T1", 1, "revocations", 4,
                                        configsync.section_text({"cards": ["C%d" % i for i in range(300)]}), 500)
    result = micropython("EXPECTED = %r\n" % expected[0].decode() + script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0].split()[1:] == ["revocations", "4", "300"] and int(lines[0].split()[0]) > 3
    assert lines[1] == "True"  # the same bytes as CPython, MAC included


# ---------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def district(tmp_path_factory):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    registry_key = Ed25519PrivateKey.generate()
    public = registry_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    many = {f"S{i:04d}": 1 + i % 20 for i in range(400)}  # enough to need several chunks
    d = QuotaDistrict(tmp_path_factory.mktemp("sync"), subjects=many, registry_keys=(public,))
    d.registry_key = registry_key
    try:
        yield d.start()
    finally:
        d.close()


def test_terminals_receive_every_section_and_report_the_versions_they_run(district):
    for name in district.names:
        store = district.agents[name].config_store
        versions = store.versions()
        assert set(versions) == {"catalogue", "params", "shop", "subjects", "balances", "revocations", "gallery"}
        assert store.params()["offline"]["fraction_pct"] == 70  # the imported params, not the sample
        assert store.shop() == {"id": f"shop-{name}", "town": fx.TOWN, "designated": False}
        assert len(store.section("subjects")["subjects"]) == 400
        assert store.subject("S0007")["plots"][0]["area_cmu"] == 800
        wait_for(lambda: district.reported_versions(name) == configsync.versions_map(store.versions()), 20,
                 f"{name} status reporting its versions")
        manifest = configsync.decode(district.retained(f"agri/v1/t/{name}/config", user=name),
                                     bytes.fromhex(district.creds[name].key_hex))
        assert manifest["kind"] == "manifest"
        assert {k: v["version"] for k, v in manifest["sections"].items()} == store.versions()


def test_imports_while_running_reach_the_terminals(district, tmp_path):
    t1 = district.agents["T001"]
    before = t1.config_store.versions()
    data = catalogue.load()
    banned_today = fx.UREA[0]
    data["products"][banned_today]["status"] = [{"status": "banned", "from": "2000-01-01"}]
    data["version"] = 99
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(data, ensure_ascii=False), "utf-8")
    gateway_cli("catalogue", "import", str(path), "--db", str(district.db))
    gateway_cli("revoke", "CARD-LOST", "--db", str(district.db))
    district.wait_config("T001", catalogue=before["catalogue"] + 1, revocations=before["revocations"] + 1)
    assert t1.config_store.catalogue()["version"] == 99
    from protocols import card
    lost = card.Card(b"\x04\x11\x22\x33\x44\x55\x66", "S0001", "CARD-LOST", "330113", "2020-01-01", "2099-12-31")
    payload = card.issue(lost, district.registry_key)
    with pytest.raises(card.CardRejected) as err:
        t1.counter.read_card(payload, lost.uid)
    assert err.value.code == "card_revoked"
    good = card.Card(b"\x04\x11\x22\x33\x44\x55\x77", "S0001", "CARD-OK", "330113", "2020-01-01", "2099-12-31")
    who = t1.counter.read_card(card.issue(good, district.registry_key), good.uid)
    assert (who.subject, who.method, who.card) == ("S0001", "card", "CARD-OK")
    out = t1.counter.decide_offline(who, [{"product": fx.UREA[0], "spec": fx.UREA[1], "packs": 1}])
    assert out["codes"] == ["product_banned"]  # the terminal decides with the new catalogue
