"""The shared envelope vectors hold under CPython and under a real MicroPython."""

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.vectors_cli import PATH
from tests.vector_checks import envelope_check

ROOT = Path(__file__).resolve().parents[1]


def test_vector_file_matches_the_reference_implementation():
    proc = subprocess.run([sys.executable, "-m", "protocols", "vectors"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_envelope_vectors_pass_under_cpython():
    assert envelope_check.run_checks(PATH) >= 30


def test_envelope_vectors_pass_under_micropython(micropython):
    source = (ROOT / "tests" / "vector_checks" / "envelope_check.py").read_text()
    result = micropython(
        "import sys\nprint(sys.implementation.name)\n"
        "import envelope_check\nprint('checked', envelope_check.run_checks('/lib/protocols/vectors/envelope.json'))\n",
        files={"/lib/envelope_check.py": source},
    )
    assert result.returncode == 0, result.stderr + result.stdout
    lines = result.stdout.split()
    assert lines[0] == "micropython"
    assert int(lines[-1]) >= 30


def test_micropython_uses_its_own_canonical_encoder(micropython):
    """The stdlib fast path must not be what MicroPython runs, or the vectors
    would prove nothing about the fallback encoder."""
    result = micropython("from protocols import canonical\nprint(canonical._stdlib_can_sort())\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_fallback_encoder_matches_stdlib_on_cpython():
    from protocols import canonical
    import json
    vectors = json.loads(PATH.read_text())
    for case in vectors["canonical"]:
        out = []
        canonical._encode(case["value"], out)
        assert "".join(out) == case["text"]


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_fallback_encoder_escapes_any_string_as_the_stdlib_does(text):
    """Control characters, quotes, backslashes and multi-byte characters in any
    mix: the fallback's byte scan copies runs whole and must not split or lose
    a character."""
    from protocols import canonical
    import json
    out = []
    canonical._encode({text: [text, text + "\\\"\n"]}, out)
    assert "".join(out) == json.dumps({text: [text, text + "\\\"\n"]}, sort_keys=True,
                                      separators=(",", ":"), ensure_ascii=False)


def test_fallback_encoder_takes_a_config_chunk_in_a_small_heap():
    """A config chunk is JSON inside a string: a quote every few characters.
    The real MicroPython unix port with a 128 KB heap encodes a 14,400
    character one, and gets the stdlib's bytes. (Measured: it needs 96 KB now;
    the per-character encoder before needed 256 KB, for its list of one string
    per character.)"""
    from tests.support import mcu

    text = '{"k": "\u519c\u836f", "n": 1}' * 600
    result = mcu.run("from protocols import canonical\n"
                     "encoded = canonical.encode({'chunk': '{\"k\": \"\\u519c\\u836f\", \"n\": 1}' * 600})\n"
                     "print(len(encoded))\n"
                     "import hashlib, binascii\n"
                     "print(binascii.hexlify(hashlib.sha256(encoded).digest()).decode())\n", heap="128K")
    assert result.returncode == 0, result.stderr
    expected = json.dumps({"chunk": text}, ensure_ascii=False, separators=(",", ":")).encode()
    import hashlib
    assert result.stdout.split() == [str(len(expected)), hashlib.sha256(expected).hexdigest()]


PROOF_CHECK = """
import binascii, json
from protocols import authz, card
def load(name):
    with open('/lib/protocols/vectors/' + name) as f:
        return json.loads(f.read())
vectors, cards = load('envelope.json'), load('card.json')
record = [c['record'] for c in vectors['records'] if 'proof' in c['record']['body']][0]
body = record['body']
trusted = card.trust_store([binascii.unhexlify(cards['public_key'].lower())])
date = authz.local_date(record['time'])
print(record['type'], body['mode'], sorted(body['proof']))
print(authz.check_proof(body, trusted, date).card_no)
other = dict(body)
other['subject'] = 'ZJ330113-00099999'
try:
    authz.check_proof(other, trusted, date)
except authz.Invalid as err:
    print(err.code)
"""


def _proof_check_output() -> list[str]:
    """What PROOF_CHECK prints: the record, the card its proof verifies as, and
    the refusal of the same proof for another subject."""
    cards = json.loads((PATH.parent / "card.json").read_text("utf-8"))
    return ["sale offline ['card']", cards["card"]["card_no"], "card_subject_mismatch"]


def test_a_vector_record_carries_an_offline_card_proof_that_holds_under_cpython():
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(PROOF_CHECK.replace("/lib/protocols/vectors/", str(PATH.parent) + "/"), {})
    assert out.getvalue().strip().split("\n") == _proof_check_output()


def test_a_vector_record_carries_an_offline_card_proof_that_holds_under_micropython(micropython):
    """The record with a proof is checked like the others by envelope_check
    (shape, canonical text, MAC, chain); here its proof is checked too, by the
    same `authz.check_proof` the gateway runs, on MicroPython."""
    result = micropython(PROOF_CHECK)
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.strip().split("\n") == _proof_check_output()
