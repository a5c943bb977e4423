"""Config sync gateway -> terminals: versioned, chunked, MACed sections on the
retained config topic; terminals persist and report what they run."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

import pytest

from gateway.supervision.rules import config as rules_config
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


RATED = {"id": "S0001", "status": "active", "town": "330113001", "village": "330113001001",
         "village_name": "东湖村", "grade": "B", "name": "测试S0001", "plots": []}


def test_subject_entries_may_carry_village_and_grade_and_nothing_unknown():
    assert configsync.check_section("subjects", {"subjects": [RATED, {"id": "S0002", "status": "active"}]})
    for bad in (dict(RATED, grade="D"), dict(RATED, grade="a"), dict(RATED, village_name="村" * 101),
                dict(RATED, id_number="330102199001011234")):
        with pytest.raises(configsync.Invalid) as err:
            configsync.check_section("subjects", {"subjects": [bad]})
        assert err.value.code == "config_invalid"
    from protocols import authz
    assert authz.SUBJECT_ENTRY is configsync.SUBJECT   # the authorization response carries the same entry


def test_a_rated_subjects_section_assembles_under_micropython(micropython):
    good = configsync.encode_chunks(KEY, "T1", 1, "subjects", 8, configsync.section_text({"subjects": [RATED]}), 60)
    bad = configsync.encode_chunks(KEY, "T1", 1, "subjects", 9,
                                   configsync.section_text({"subjects": [dict(RATED, grade="D")]}), 60)
    script = (
        "from protocols import configsync\n"
        "key = bytes(range(32))\n"
        "a = configsync.Assembler()\n"
        "for p in GOOD:\n"
        "    out = a.add(configsync.decode(p, key))\n"
        "e = out[2]['subjects'][0]\n"
        "print(out[1], e['village'], e['grade'], e['village_name'] == '\u4e1c\u6e56\u6751')\n"
        "b = configsync.Assembler()\n"
        "try:\n"
        "    for p in BAD:\n"
        "        b.add(configsync.decode(p, key))\n"
        "except configsync.Invalid as err:\n"
        "    print(err.code)\n"
    )
    result = micropython("GOOD = %r\nBAD = %r\n" % (good, bad) + script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["8 330113001001 B True", "config_invalid"]
    assert len(good) > 2   # several chunks, so the entry crossed chunk boundaries


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
    """One running district for the module (400 subjects take a while to sync).
    Shared safely because each test changes only what it alone asserts on: the
    catalogue and revocations (`test_imports_...`), subject S0042's grade
    (`test_a_confirmed_case_...`); the first test checks only what those leave
    alone, and waits for the terminals to run what the gateway announces
    instead of assuming no push is under way."""
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
        key = bytes.fromhex(district.creds[name].key_hex)

        def announced() -> dict:
            manifest = configsync.decode(district.retained(f"agri/v1/t/{name}/config", user=name), key)
            assert manifest["kind"] == "manifest"
            return {k: v["version"] for k, v in manifest["sections"].items()}
        wait_for(lambda: announced() == store.versions()
                 and district.reported_versions(name) == configsync.versions_map(store.versions()), 20,
                 f"{name} running the announced versions and reporting them")


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


def test_a_confirmed_case_reaches_the_running_terminals_as_the_subjects_grade(district, tmp_path):
    """The subject's village (code and name from the grid) and credit grade
    travel in the `subjects` section; a case closed as confirmed at the gateway
    gives the section a new version, and the running terminals take the new
    grade without a restart. ID numbers stay at the gateway."""
    from gateway.supervision import cases, grid
    from gateway.store import users, violations
    from gateway.store import connect
    from tests.support.supervision import DISTRICT, GRID, VILLAGE1
    t1 = district.agents["T001"]
    entry = dict(fx.subjects({"S0042": 3})[0], village=VILLAGE1, id_number="330102199001011234")
    conn = connect(district.db)
    try:
        grid.import_grid(conn, GRID)
        gateway_cli("subjects", "import", str(fx.write_jsonl(tmp_path / "s.jsonl", [entry])), "--db", str(district.db))
        synced = wait_for(lambda: (lambda e: e if e and e.get("village_name") else None)(t1.config_store.subject("S0042")),
                          30, "S0042 with its village on T001")
        assert (synced["village"], synced["village_name"], synced["grade"]) == (VILLAGE1, "东湖村", "A")
        assert "id_number" not in synced and "330102199001011234" not in json.dumps(t1.config_store.section("subjects"))
        assert set(synced) <= {"id", "status", "town", "village", "village_name", "grade", "name", "plots", "permits",
                               "allowances"}
        before = t1.config_store.versions()["subjects"]
        now = int(time.time() * 1000)
        users.add_user(conn, "grade-d1", "district", DISTRICT, "password-1", now)
        conn.execute("BEGIN IMMEDIATE")   # the gateway's sweep files violations too: one at a time
        violations.report(conn, now, "banned_product_sold", "grade-test:S0042", subject="S0042", shop="SHOP1")
        cases.file_new_violations(conn, now, rules_config.load())
        conn.execute("COMMIT")
        (case_id,) = conn.execute("SELECT id FROM cases WHERE subject = 'S0042'").fetchone()
        inspector = users.user_by_name(conn, "grade-d1")
        conn.execute("BEGIN IMMEDIATE")
        cases.inspect(conn, now, inspector, case_id, "violation_found")
        cases.close(conn, now, inspector, case_id, "confirmed")
        conn.execute("COMMIT")
        assert cases.grade(conn, "S0042", now, rules_config.load())["grade"] == "B"
    finally:
        conn.close()
    for name in district.names:
        store = district.agents[name].config_store
        wait_for(lambda: store.subject("S0042").get("grade") == "B", 30, f"{name} taking S0042's grade B")
        assert store.versions()["subjects"] != before
        assert store.subject("S0041").get("grade") == "A"   # the others as they were
        wait_for(lambda: district.reported_versions(name).get("subjects") == str(store.versions()["subjects"]), 20,
                 f"{name} reporting the new subjects version")


# ---------------------------------------------------------------- face gallery

def test_a_gallery_section_assembles_under_micropython(micropython):
    from protocols import facegallery
    rows = facegallery.pack_rows([[(i * 7 + j) % 13 / 64.0 for j in range(128)] for i in range(5)])
    payload = facegallery.build([("S0001", rows[:1024]), ("S0002", rows[1024:])], "2025-03-01T08:00:00+00:00")
    text = configsync.section_text(facegallery.section(payload))
    parts = configsync.encode_chunks(KEY, "T1", 1, "gallery", 5, text, 1000)
    broken = configsync.encode_chunks(KEY, "T1", 1, "gallery", 6, configsync.section_text(
        dict(facegallery.section(payload), rows=4)), 1000)
    script = (
        "from protocols import configsync, facegallery\n"
        "key = bytes(range(32))\n"
        "a = configsync.Assembler()\n"
        "out = None\n"
        "for p in PARTS:\n"
        "    out = a.add(configsync.decode(p, key))\n"
        "head, offset = facegallery.parse(facegallery.payload_of(out[2]))\n"
        "print(out[0], out[1], head['subjects'], head['counts'], offset)\n"
        "b = configsync.Assembler()\n"
        "try:\n"
        "    for p in BROKEN:\n"
        "        b.add(configsync.decode(p, key))\n"
        "except configsync.Invalid as err:\n"
        "    print(err.code)\n"
    )
    result = micropython("PARTS = %r\nBROKEN = %r\n" % (parts, broken) + script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    offset = facegallery.parse(payload)[1]
    assert lines[0] == "gallery 5 ['S0001', 'S0002'] [2, 3] %d" % offset
    assert lines[1] == "config_invalid"


def face_line(subject: str, rows: list, **extra) -> str:
    return json.dumps(dict({"subject": subject, "model": "dlib_face_recognition_resnet_model_v1/5pt",
                            "encodings": rows}, **extra))


@pytest.mark.parametrize("line, why", [
    (face_line("S0001", [[0.1] * 127]), "128 finite numbers"),
    (face_line("S0001", [[float("nan")] * 128]), "128 finite numbers"),
    (face_line("S0001", [[0.1] * 128] * 11), "at most 10"),
    (face_line("S0001", [[0.1] * 128], model="another"), "model"),
    (face_line("S0001", [], reason="face_too_dark"), "face_too_dark"),
    (face_line("S 1", [[0.1] * 128]), "subject id"),
    ("not json", "not JSON"),
])
def test_a_bad_face_import_line_refuses_the_whole_file(line, why):
    from gateway.enforcement import faces
    with pytest.raises(faces.FacesError) as err:
        faces.parse_import(face_line("S0002", [[0.2] * 128]) + "\n" + line + "\n", "faces.jsonl")
    assert why in str(err.value) and "faces.jsonl:2" in str(err.value)


def test_enrolled_faces_make_versioned_galleries_for_the_subjects_a_shop_serves(tmp_path):
    from gateway.enforcement import faces, quota, registry
    from gateway.store import connect
    from gateway.store import faces as faces_store
    from protocols import facegallery
    conn = connect(tmp_path / "g.db")
    registry.import_subjects(conn, fx.subjects({"S0001": 1, "S0002": 1, "S0003": 1}), 1)
    with pytest.raises(faces.FacesError, match="S0009"):  # a face for no registered subject
        faces.import_faces(conn, faces.parse_import(face_line("S0009", [[0.1] * 128]), "f"), 2)
    assert faces_store.enrolled(conn) == [] and faces.gallery_version(conn, ["S0001", "S0002"]) == 0
    same = [[0.05 * (i % 7) for i in range(128)]]
    entries = faces.parse_import(face_line("S0001", same) + "\n" + face_line("S0002", same), "f")
    faces.import_faces(conn, entries, 3)
    assert faces.similar(conn, entries) == [{"subjects": ["S0001", "S0002"], "distance": 0.0}]  # two cards, one face
    v12, v1 = faces.gallery_version(conn, ["S0001", "S0002", "S0003"]), faces.gallery_version(conn, ["S0001"])
    assert 0 < v12 != v1 > 0 and faces.gallery_version(conn, ["S0003"]) == 0
    head, offset = facegallery.parse(faces.gallery_payload(conn, ["S0001", "S0002", "S0003"]))
    assert (head["subjects"], head["counts"]) == (["S0001", "S0002"], [1, 1])
    assert faces.remove(conn, ["S0002"]) == 1
    assert faces.gallery_version(conn, ["S0001", "S0002", "S0003"]) not in (v12, 0)
    faces.import_faces(conn, entries[:1], 4)  # re-enrolled: a new version though the set is the same
    assert faces.gallery_version(conn, ["S0001"]) != v1
    conn.close()


FACE_SUBJECTS = {"S0001": "obama2.jpg", "S0002": "biden.jpg"}


def encode_faces(path, photos: dict[str, str]) -> list[dict]:
    """What an enrollment station does: photos through the counter's own capture
    checks and model (`python -m firmware face encode`), one JSON line each."""
    from tests.support import face_images as fi
    import subprocess
    import sys
    lines = []
    for subject, photo in photos.items():
        proc = subprocess.run([sys.executable, "-m", "firmware", "face", "encode", "--subject", subject,
                               "--image", str(fi.path(photo))], capture_output=True, text=True, timeout=120,
                              cwd=str(Path(__file__).resolve().parents[1]))
        assert proc.returncode == 0, proc.stderr
        lines.append(json.loads(proc.stdout))
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), "utf-8")
    return lines


@pytest.fixture(scope="module")
def face_file(tmp_path_factory) -> Path:
    """The enrollment station's file for S0001 and S0002, encoded once (the model
    takes seconds); only ever read."""
    path = tmp_path_factory.mktemp("enroll") / "faces.jsonl"
    lines = encode_faces(path, FACE_SUBJECTS)
    assert [(line["enrolled"], len(line["encodings"])) for line in lines] == [(1, 1), (1, 1)]
    return path


@pytest.fixture
def face_district(tmp_path, face_file):
    """A district of its own for each test, S0001 and S0002 enrolled at the
    gateway while it runs: these tests remove faces, push forged galleries and
    cut the network; one is ready, gallery synced, in about two seconds."""
    d = QuotaDistrict(tmp_path / "faces", subjects={"S0001": 5, "S0002": 5, "S0003": 5})
    try:
        d.start()
        out = json.loads(gateway_cli("faces", "import", str(face_file), "--db", str(d.db)).stdout)
        assert (out["imported"], out["encodings"], out["similar"]) == (2, 2, [])
        for name in d.names:
            face = d.agents[name].face
            wait_for(lambda: face.gallery.index_of("S0002") is not None, 30, f"{name} gallery with S0002")
        yield d
    finally:
        d.close()


@pytest.fixture
def enrolled(face_file) -> dict[str, list]:
    """The encodings the gateway was given, by subject."""
    return {line["subject"]: line["encodings"] for line in map(json.loads, face_file.read_text("utf-8").splitlines())}


def face_frames(photo: str):
    from tests.support import face_images as fi
    return [fi.load(photo)]


def test_a_face_enrolled_at_the_gateway_is_identified_by_the_shops_terminals(face_district, enrolled):
    from firmware.counter import CounterError
    from protocols import facegallery
    t1 = face_district.agents["T001"]
    who = t1.counter.identify_by_face(face_frames("obama.jpg"))  # another photo than the one enrolled
    assert (who.subject, who.method) == ("S0001", "face")
    with pytest.raises(CounterError) as refused:
        t1.counter.identify_by_face(face_frames("astronaut.png"))  # not enrolled anywhere
    assert refused.value.code == "face_no_match"
    assert sorted(face_district.agents["T002"].face.gallery.subjects) == ["S0001", "S0002"]
    # the version the gateway announces is the one the terminal runs and reports
    key = bytes.fromhex(face_district.creds["T001"].key_hex)
    wait_for(lambda: face_district.reported_versions("T001").get("gallery")
             == str(t1.config_store.versions()["gallery"]), 20, "T001 reporting its gallery version")
    manifest = configsync.decode(face_district.retained("agri/v1/t/T001/config", user="T001"), key)
    assert manifest["sections"]["gallery"]["version"] == t1.config_store.versions()["gallery"] > 0
    # at rest: sealed under the device key; nothing in the clear, in either file
    raw = facegallery.pack_rows(enrolled["S0001"])
    blob = t1.face_gallery.path.read_bytes()
    assert blob[:6] == b"AQFACE" and blob[7] & 1
    assert raw not in blob and raw[:64] not in blob and b"S0001" not in blob
    for path in face_district.root.glob("T001.ledger.config.db*"):
        assert raw[:64] not in path.read_bytes(), path.name
    assert "b64" not in t1.config_store.gallery() and t1.config_store.gallery()["subjects"] == 2


def test_a_face_removed_at_the_gateway_leaves_the_terminals_gallery(face_district, enrolled):
    t1 = face_district.agents["T001"]
    before = t1.config_store.versions()["gallery"]
    assert json.loads(gateway_cli("faces", "remove", "S0002", "--db", str(face_district.db)).stdout) == {"removed": 1}
    wait_for(lambda: t1.face.gallery.index_of("S0002") is None, 30, "T001 gallery without S0002")
    assert t1.config_store.versions()["gallery"] != before
    assert t1.counter.identify_by_face(face_frames("obama.jpg")).subject == "S0001"


def publish_as_gateway(district, terminal: str, payloads: list[bytes]) -> None:
    """Config messages on a terminal's topic, as only the gateway may send them."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from gateway.enforcement import fleet
    from tests.support.quota_district import GATEWAY_PASSWORD
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="forger", protocol=mqtt.MQTTv311)
    client.username_pw_set(fleet.GATEWAY_USER, GATEWAY_PASSWORD)
    client.connect("127.0.0.1", district.broker.port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(f"agri/v1/t/{terminal}/config", payload, qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def test_a_corrupt_gallery_chunk_leaves_the_old_gallery_in_use(face_district, enrolled):
    import numpy as np
    from protocols import facegallery
    t1 = face_district.agents["T001"]
    key = bytes.fromhex(face_district.creds["T001"].key_hex)
    version, digest = t1.config_store.versions()["gallery"], t1.face_gallery.digest
    on_disk = t1.face_gallery.path.read_bytes()
    rejected = t1.sync.rejected
    # a stranger's face under S0001's id, as a forger would want it
    rows = np.random.default_rng(3).normal(0, 0.09, (1, 128)).astype("<f4").tobytes()
    content = facegallery.section(facegallery.build([("S0001", rows)]))
    text = configsync.section_text(content)
    tampered = [json.loads(p) for p in configsync.encode_chunks(key, "T001", 1, "gallery", 901, text, 300)]
    tampered[1]["data"] = tampered[1]["data"][:-4] + "AAAA"  # altered on the way: the MAC no longer fits
    resigned = [json.loads(p) for p in configsync.encode_chunks(key, "T001", 1, "gallery", 902, text, 300)]
    resigned[1]["data"] = resigned[1]["data"][:-4] + "AAAA"  # altered before signing: the digest does not fit
    resigned[1]["mac"] = configsync._mac(key, resigned[1])
    short = facegallery.payload_of(content)[:-512]  # its one row missing: well signed, but not a gallery
    malformed = configsync.encode_chunks(key, "T001", 1, "gallery", 903, configsync.section_text(dict(
        content, b64=base64.b64encode(short).decode(), size=len(short), digest=hashlib.sha256(short).hexdigest())),
        300)
    publish_as_gateway(face_district, "T001", [json.dumps(m).encode() for m in tampered]
                       + [json.dumps(m).encode() for m in resigned] + malformed)
    wait_for(lambda: t1.sync.rejected >= rejected + 3, 30, "the three bad galleries refused")
    assert t1.sync.last_rejected[0] == "config_invalid"
    assert t1.config_store.versions()["gallery"] == version and t1.face_gallery.digest == digest
    assert t1.face_gallery.path.read_bytes() == on_disk
    assert t1.counter.identify_by_face(face_frames("obama.jpg")).subject == "S0001"


def test_the_kiosk_identifies_the_buyer_at_the_camera_against_the_synced_gallery(face_district, enrolled):
    from firmware.counter import Identity
    from firmware.clerk_pins import pin_hash
    from terminal_ui.config import Clerk, KioskSettings
    from terminal_ui.kiosk import Kiosk
    from hardware.camera import open_camera
    from tests.support import face_images as fi
    agent = face_district.agents["T001"]
    settings = KioskSettings(voice=False, player=(), clerks=[Clerk("c1", "李梅", pin_hash("c1", "2468"))])
    kiosk = Kiosk(agent.config, settings, agent=agent)  # the counter session around the running agent
    kiosk.sign_in("2468")
    try:
        kiosk.camera = open_camera([str(fi.path("astronaut.png"))])  # the camera twin: a stranger
        kiosk.face_check()
        assert kiosk.identity is None and kiosk.message["code"] == "face_no_match"
        kiosk.camera.close()
        kiosk.camera = open_camera([str(fi.path("obama.jpg"))])
        kiosk.face_check()
        assert kiosk.screen == "sale" and kiosk.identity == Identity("S0001", "face")
        assert kiosk.snapshot()["subject"]["method"] == "face"
    finally:
        kiosk.camera.close()


def test_a_terminal_restarted_with_the_network_cut_still_identifies_faces(face_district, enrolled):
    version = face_district.agents["T001"].config_store.versions()["gallery"]
    face_district.stop_agent("T001")
    face_district.broker.kill()  # no broker, no gateway: the shop's line is down
    t1 = face_district.start_agent("T001")
    assert not t1.uplink.connected
    assert t1.config_store.versions()["gallery"] == version
    who = t1.counter.identify_by_face(face_frames("obama.jpg"))
    assert (who.subject, who.method) == ("S0001", "face")
