"""The shared envelope vectors hold under CPython and under a real MicroPython."""

import subprocess
import sys
from pathlib import Path

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
