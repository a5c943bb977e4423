"""The quota policy decides every shared vector as written, identically under
CPython and a real MicroPython, and keeps its promises on any input."""

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import canonical, catalogue, policy, reasons

ROOT = Path(__file__).resolve().parents[1]
VECTORS_PATH = ROOT / "protocols" / "vectors" / "policy.json"
VECTORS = json.loads(VECTORS_PATH.read_text("utf-8"))
CATALOGUE = catalogue.load(str(ROOT / "protocols" / VECTORS["catalogue"]))

# One source for building a case from the vector file, run as is by CPython and
# by MicroPython, so both interpreters decide on exactly the same inputs.
RUNNER = r'''
import json


def _copy(value):
    return json.loads(json.dumps(value))


def _set(root, path, value):
    parts = path.split(".")
    node = root
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def build(vectors, catalogue, case):
    inputs = _copy(vectors["base"])
    settings = case.get("set") or {}
    for path in sorted(settings):
        _set(inputs, path, _copy([settings[path]])[0])
    cat = catalogue
    add = case.get("catalogue_add")
    if add:
        cat = dict(catalogue)
        for section in add:
            merged = dict(catalogue[section])
            merged.update(add[section])
            cat[section] = merged
    inputs["catalogue"] = cat
    inputs["cart"] = _copy(case["cart"])
    return inputs


def run_case(decide, error_type, vectors, catalogue, case):
    try:
        return {"ok": decide(build(vectors, catalogue, case))}
    except error_type as e:
        return {"error": e.code}
'''
_NS = {}
exec(RUNNER, _NS)
build = _NS["build"]
run_case = _NS["run_case"]

CASES = VECTORS["cases"]
MISSING = object()


def assert_matches(expect, actual, name):
    for key, want in expect.items():
        if key == "items":
            got = actual["items"]
            assert len(got) == len(want), "%s: %d lines, expected %d" % (name, len(got), len(want))
            for line, (want_item, got_item) in enumerate(zip(want, got)):
                for field, value in want_item.items():
                    assert got_item.get(field, MISSING) == value, (
                        "%s: line %d field %s is %r, expected %r" % (name, line, field, got_item.get(field), value))
        else:
            assert actual.get(key, MISSING) == want, (
                "%s: %s is %r, expected %r" % (name, key, actual.get(key), want))


def check_case(case, result):
    if "error" in case:
        assert result == {"error": case["error"]}, case["name"]
    else:
        assert "ok" in result, "%s raised %r" % (case["name"], result)
        assert_matches(case["expect"], result["ok"], case["name"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_policy_vector_holds_under_cpython(case):
    check_case(case, run_case(policy.decide, policy.PolicyError, VECTORS, CATALOGUE, case))


def test_micropython_decides_every_vector_exactly_like_cpython(micropython):
    code = RUNNER + r'''
import sys
from protocols import catalogue, policy
vectors = json.load(open("/lib/protocols/vectors/policy.json"))
cat = catalogue.load()
out = []
for case in vectors["cases"]:
    out.append(run_case(policy.decide, policy.PolicyError, vectors, cat, case))
print(sys.implementation.name)
print(json.dumps(out))
'''
    result = micropython(code)
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
    lines = result.stdout.strip().split("\n")
    assert lines[0] == "micropython"
    results = json.loads(lines[-1])
    assert len(results) == len(CASES)
    for case, mp_result in zip(CASES, results):
        check_case(case, mp_result)
        cpython = run_case(policy.decide, policy.PolicyError, VECTORS, CATALOGUE, case)
        assert mp_result == cpython, case["name"]


def _all_codes_in_vectors():
    seen = set()
    for case in CASES:
        if "error" in case:
            seen.add(case["error"])
            continue
        seen.update(case["expect"].get("codes", []))
        seen.update(case["expect"].get("reasons", []))
        for item in case["expect"].get("items", []):
            seen.update(item.get("reasons", []))
    return seen


def test_vectors_exercise_every_policy_reason_code():
    own = set(policy.REASONS) | {"unknown_product"}
    assert own - _all_codes_in_vectors() == set()


def test_every_policy_code_has_chinese_english_and_an_action():
    for code in list(policy.REASONS) + ["unknown_product"]:
        assert reasons.known(code)
        zh, en = reasons.text(code, "zh"), reasons.text(code, "en")
        assert zh != en and zh != code and en != code
        assert any("\u4e00" <= ch <= "\u9fff" for ch in zh), code
        assert policy.action(code) in policy.ACTION_ORDER, code
        assert code in policy.ACTIONS, code


def test_reason_codes_are_wire_ids():
    from protocols.schema import is_id

    for code in policy.REASONS:
        assert is_id(code) and code == code.lower()


# --- properties over generated sales --------------------------------------

PRODUCTS = sorted((key, spec) for key, prod in CATALOGUE["products"].items() for spec in prod["packs"])
DATES = st.builds(lambda y, m, d: "%04d-%02d-%02d" % (y, m, d),
                  st.integers(2017, 2027), st.integers(1, 12), st.integers(1, 28))
LINES = st.lists(
    st.builds(lambda p, n: {"product": p[0], "spec": p[1], "packs": n}, st.sampled_from(PRODUCTS), st.integers(1, 12)),
    min_size=1, max_size=5)
USED = st.integers(0, 400000)


def make_inputs(cart, date, mode, identity, used_n, used_ml, designated, permit):
    inputs = build(VECTORS, CATALOGUE, {"cart": cart})
    inputs["date"] = date
    inputs["mode"] = mode
    inputs["identity"] = identity
    inputs["shop"]["designated"] = designated
    if not permit:
        inputs["subject"]["permits"] = []
    year = date[:4]
    inputs["balances"] = {"fert_n": {year: used_n}, "pesticide_ml": {policy.period_of(inputs["params"], "pesticide_ml", date): used_ml}}
    return inputs


SALES = st.builds(make_inputs, LINES, DATES, st.sampled_from(["online", "offline"]),
                  st.sampled_from(["card", "face", "card+face", "override"]), USED, st.integers(0, 6000),
                  st.booleans(), st.booleans())


def _walk(value):
    yield value
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


@settings(max_examples=300, deadline=None)
@given(SALES)
def test_decision_is_deterministic_integer_only_and_leaves_inputs_alone(inputs):
    before = copy.deepcopy(inputs)
    first = policy.decide(inputs)
    assert inputs == before
    assert policy.decide(copy.deepcopy(inputs)) == first
    assert not any(isinstance(v, float) for v in _walk(first))
    canonical.encode(first)  # crosses the wire as canonical JSON, as is


@settings(max_examples=300, deadline=None)
@given(SALES)
def test_approved_lines_add_up_and_never_overdraw_an_enforced_category(inputs):
    out = policy.decide(inputs)
    totals = {}
    for item in out["items"]:
        if item["decision"] == "approve":
            assert item["reasons"] == [] and item["action"] is None
            for cid, amount in item["consumption"].items():
                totals[cid] = totals.get(cid, 0) + amount
        else:
            assert item["reasons"] and item["consumption"] == {}
    assert totals == out["consumption"]
    report = policy.balance(inputs["subject"], inputs["balances"], inputs["params"], inputs["date"])
    for cid, used in totals.items():
        if report[cid]["enforced"]:
            assert used <= max(report[cid]["remaining"], 0)
            assert out["remaining"][cid] == report[cid]["remaining"] - used


@settings(max_examples=300, deadline=None)
@given(SALES)
def test_max_packs_is_exactly_what_would_pass(inputs):
    """The clerk's "reduce to n" must be right: n passes and n+1 does not."""
    inputs["cart"] = inputs["cart"][:1]
    item = policy.decide(inputs)["items"][0]
    if "max_packs" not in item:
        return
    n = item["max_packs"]
    assert 0 <= n < inputs["cart"][0]["packs"]
    if n:
        inputs["cart"][0]["packs"] = n
        assert policy.decide(inputs)["items"][0]["decision"] == "approve"
    inputs["cart"][0]["packs"] = n + 1
    assert policy.decide(inputs)["items"][0]["decision"] == "refuse"


@given(st.integers(1, 10**6), st.integers(1, 50), st.integers(1, 2 * 10**6))
def test_a_line_consumes_its_content_rounded_up_once(net, packs, content):
    prod = {"kind": "fertilizer", "nutrients": {"N": content}}
    num, den = policy.per_pack({"basis": "nutrient", "nutrients": ["N"]}, prod, {"net": net, "unit": "g"})
    exact = packs * net * content  # in 10**-6 g
    line = -(-packs * num // den)
    assert line * 10**6 >= exact > (line - 1) * 10**6


def test_allowance_is_area_times_norm_rounded_down():
    params = {"categories": {"n": {"basis": "nutrient", "nutrients": ["N"]}}, "norms": {"rice": {"n": 333}, "tea": {"n": 100}}}
    subject = {"plots": [{"crop": "rice", "area_cmu": 101}, {"crop": "tea", "area_cmu": 50}, {"crop": "lotus", "area_cmu": 900}]}
    assert policy.allowance(subject, params, "n", "2025") == (101 * 333 + 50 * 100) // 100  # 386.33 -> 386
    subject["allowances"] = {"n": 5}
    assert policy.allowance(subject, params, "n", "2025") == 5


def test_balance_report_lists_every_category_for_the_cli():
    report = policy.balance(VECTORS["base"]["subject"], VECTORS["base"]["balances"], VECTORS["base"]["params"], "2025-04-12")
    assert report["fert_n"] == {"period": "2025", "allowance": 207500, "used": 100000, "remaining": 107500, "enforced": True}
    assert report["pesticide_ml"]["period"] == "2025-spring"
    assert report["pesticide_ml"]["remaining"] == 950
    assert report["fert_k2o"]["enforced"] is False


def test_shipped_sample_params_decide_a_sale():
    params = json.loads((ROOT / "protocols" / "data" / "policy_params.json").read_text("utf-8"))
    inputs = build(VECTORS, CATALOGUE, {"cart": [{"product": "XK13-001-00102", "spec": "001", "packs": 1}]})
    inputs["params"] = params
    out = policy.decide(inputs)
    assert out["decision"] == "approve"
    assert out["consumption"] == {"fert_n": 7500, "fert_total": 22500, "fert_k2o": 7500}


def test_policy_error_names_the_bad_field():
    inputs = build(VECTORS, CATALOGUE, {"cart": []})
    inputs["params"]["categories"]["fert_n"]["basis"] = "volume"
    with pytest.raises(policy.PolicyError) as err:
        policy.decide(inputs)
    assert err.value.code == "policy_input_invalid"
    assert "params.categories.fert_n.basis" in err.value.detail
