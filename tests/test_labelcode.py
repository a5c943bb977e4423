"""Label QR codes (MoA No. 2579) and EAN-13 barcodes resolve to catalogue packs,
and every malformed scan is refused with a precise code, under CPython and
MicroPython alike."""

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import catalogue, labelcode, reasons

ROOT = Path(__file__).resolve().parents[1]
VECTORS = json.loads((ROOT / "protocols" / "vectors" / "labelcode.json").read_text("utf-8"))
CATALOGUE = catalogue.load(str(ROOT / "protocols" / VECTORS["catalogue"]))
CASES = VECTORS["cases"]

# Run as is by both interpreters: one scan in, one plain result out.
RUNNER = r'''
def scan_case(catalogue_module, labelcode_module, data, case):
    add = case.get("catalogue_add")
    if add:
        data = dict(data)
        for section in add:
            merged = dict(data[section])
            merged.update(add[section])
            data[section] = merged
    index = catalogue_module.Index(data)
    try:
        parsed = labelcode_module.parse(case["text"])
        return {"parsed": parsed, "resolved": labelcode_module.resolve(parsed, index)}
    except labelcode_module.LabelError as e:
        return {"error": e.code}
'''
_NS = {}
exec(RUNNER, _NS)
scan_case = _NS["scan_case"]


def check_case(case, result):
    name = case["name"]
    if "error" in case:
        assert result == {"error": case["error"]}, name
        return
    assert "error" not in result, "%s: %r" % (name, result)
    resolved = result["resolved"]
    assert {"product": resolved["product"], "spec": resolved["spec"]} == case["expect"], name
    for field, value in case["parsed"].items():
        assert result["parsed"][field] == value, "%s: %s" % (name, field)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_label_vector_holds_under_cpython(case):
    check_case(case, scan_case(catalogue, labelcode, CATALOGUE, case))


def test_micropython_scans_every_vector_exactly_like_cpython(micropython):
    code = RUNNER + r'''
import json, sys
from protocols import catalogue, labelcode
vectors = json.load(open("/lib/protocols/vectors/labelcode.json"))
data = catalogue.load()
print(sys.implementation.name)
print(json.dumps([scan_case(catalogue, labelcode, data, case) for case in vectors["cases"]]))
'''
    result = micropython(code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().split("\n")
    assert lines[0] == "micropython"
    results = json.loads(lines[-1])
    assert len(results) == len(CASES)
    for case, mp_result in zip(CASES, results):
        check_case(case, mp_result)
        assert mp_result == scan_case(catalogue, labelcode, CATALOGUE, case), case["name"]


def test_vectors_exercise_every_label_reason_code():
    seen = {case["error"] for case in CASES if "error" in case}
    assert set(labelcode.REASONS) | {"unknown_product"} <= seen


def test_every_label_code_has_texts_and_an_action():
    for code in list(labelcode.REASONS) + ["unknown_product"]:
        assert reasons.text(code, "zh") != reasons.text(code, "en") != code
        assert code in labelcode.ACTIONS


def test_unit_code_fields_sit_where_the_announcement_puts_them():
    code = "2" + "123456" + "3" + "045" + "0" * 20 + "7"
    assert labelcode.parse_unit_code(code) == {
        "kind": "unit_code", "code": code, "class": "WP", "reg6": "123456",
        "production": "subpack", "spec": "045", "serial": "0" * 20 + "7",
    }


@given(st.sampled_from(sorted(labelcode.CLASSES)), st.text("0123456789", min_size=6, max_size=6),
       st.sampled_from(sorted(labelcode.PRODUCTION)), st.text("0123456789", min_size=3, max_size=3),
       st.text("0123456789", min_size=21, max_size=21), st.text("abcxyz/:?=._-", max_size=30))
def test_any_well_formed_code_is_found_inside_any_url(cls, reg6, production, spec, serial, noise):
    code = cls + reg6 + production + spec + serial
    parsed = labelcode.parse("https://" + noise + "/" + code + "?" + noise)
    assert (parsed["code"], parsed["reg6"], parsed["spec"], parsed["serial"]) == (code, reg6, spec, serial)


@given(st.text(max_size=80))
def test_arbitrary_scans_either_parse_or_fail_with_a_label_code(text):
    try:
        parsed = labelcode.parse(text)
    except labelcode.LabelError as err:
        assert err.code in labelcode.REASONS
    else:
        assert parsed["kind"] in ("unit_code", "ean13")
