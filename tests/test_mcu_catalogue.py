"""The card-only terminal reads only its cart's products from the synced
catalogue (firmware/mcu/sync.py catalogue.idx): under MicroPython, for every
product of the shipped catalogue and every pack, the policy decides exactly as
it does with the whole catalogue, and the cut-down catalogue is a fraction of
the whole one in RAM. The index is made from the section's text an entry at a
time, checked as it goes: it refuses what protocols.catalogue.check refuses,
in a heap the whole catalogue parsed would not fit."""

from __future__ import annotations

import json

import copy

import pytest

from protocols import canonical, catalogue
from tests.support import mcu
from tests.support import quota_fixtures as fx


def test_cut_down_catalogue_gives_the_whole_catalogue_s_decisions(tmp_path):
    params = fx.params()
    subject = fx.subjects({"S-C-0001": 50})[0]
    code = f"""
import gc, json, os, sync
from protocols import authz, canonical, catalogue, policy
full = catalogue.load()
store = sync.ConfigStore({str(tmp_path / "config")!r}, "M001", b"k" * 32)
store._versions["catalogue"] = 5
with open({str(tmp_path / "section.json")!r}, "w") as f:
    f.write(canonical.dumps(full))
store._index_catalogue(5, {str(tmp_path / "section.json")!r})
os.rename(store._idx() + ".new", store._idx())
params = json.loads({json.dumps(params)!r})
subject = json.loads({json.dumps(subject)!r})
same = differ = 0
for key in sorted(full["products"]):
    for spec in sorted(full["products"][key]["packs"]):
        cart = [{{"product": key, "spec": spec, "packs": 2}}]
        inputs = {{"date": "2026-05-01", "mode": "offline", "identity": "card", "subject": subject,
                  "shop": {{"id": "shop-1", "designated": False}}, "cart": cart, "balances": {{}}, "params": params}}
        inputs["catalogue"] = full
        a = authz.wire_decision(policy.decide(inputs))
        inputs["catalogue"] = store.catalogue_for([key])
        b = authz.wire_decision(policy.decide(inputs))
        if a == b:
            same += 1
        else:
            differ += 1
            print("DIFFER", key, spec)
print("SAME", same, differ)
gc.collect(); before = gc.mem_alloc()
cut = store.catalogue_for(["XK13-001-00101"])
gc.collect(); print("BYTES", gc.mem_alloc() - before)
"""
    result = mcu.run(code)
    assert result.returncode == 0, result.stdout + result.stderr
    same, differ = map(int, result.lines("SAME")[0].split())
    assert differ == 0 and same > 20, result.stdout
    assert int(result.lines("BYTES")[0]) < 20_000   # the whole catalogue parsed is ~107 KB here


# From source on the 64-bit unix port: sync and what it imports hold ~70 KB;
# the catalogue parsed whole (json.load) needs ~120 KB more and runs this out,
# the streamed index (an entry at a time, garbage collected between) does not.
STREAM_HEAP = "160K"


def _broken(kind: str) -> dict:
    data = copy.deepcopy(catalogue.load())
    products = data["products"]
    first = sorted(products)[0]
    with_ean = [k for k in sorted(products) if any("ean" in p for p in products[k]["packs"].values())]
    if kind == "unknown_ingredient":
        products[first]["ingredients"] = {"no-such-thing": 10}
    elif kind == "bad_ean":
        pack = next(iter(products[with_ean[0]]["packs"].values()))
        pack["ean"] = pack["ean"][:-1] + str((int(pack["ean"][-1]) + 1) % 10)
    elif kind == "duplicate_ean":
        a = next(p for p in products[with_ean[0]]["packs"].values() if "ean" in p)
        b = next(p for p in products[with_ean[1]]["packs"].values() if "ean" in p)
        b["ean"] = a["ean"]
    elif kind == "no_version":
        del data["version"]
    elif kind == "products_not_an_object":
        data["products"] = []
    elif kind == "bad_spec":
        products[first]["packs"]["1"] = {"net": 1, "unit": "g"}
    return data


@pytest.mark.parametrize("kind", ["unknown_ingredient", "bad_ean", "duplicate_ean", "no_version",
                                  "products_not_an_object", "bad_spec"])
def test_the_streamed_check_refuses_what_the_whole_check_refuses(tmp_path, kind):
    data = _broken(kind)
    with pytest.raises(catalogue.CatalogueError):
        catalogue.check(data)
    section = tmp_path / "section.json"
    section.write_text(canonical.dumps(data), "utf-8")
    code = f"""
import os, sync
from protocols import catalogue, configsync
store = sync.ConfigStore({str(tmp_path / "config")!r}, "M001", b"k" * 32)
try:
    store._index_catalogue(5, {str(section)!r})
    print("ACCEPTED")
except configsync.Invalid as err:
    print("REFUSED", err.code, err.detail)
print("LEFT", sorted(os.listdir({str(tmp_path / "config")!r})))
"""
    result = mcu.run(code, heap=STREAM_HEAP)
    assert result.returncode == 0, result.stdout + result.stderr
    (refused,) = result.lines("REFUSED")
    assert refused.startswith("config_invalid catalogue: catalogue_invalid")
    assert result.lines("LEFT") == ["[]"]     # no index, no leftovers


def test_the_whole_district_catalogue_is_indexed_in_a_heap_it_would_not_fit_parsed(tmp_path):
    section = tmp_path / "section.json"
    section.write_text(canonical.dumps(catalogue.load()), "utf-8")
    code = f"""
import gc, json, os, sync
from protocols import catalogue
store = sync.ConfigStore({str(tmp_path / "config")!r}, "M001", b"k" * 32)
store._index_catalogue(5, {str(section)!r})
print("INDEXED", sum(1 for _ in open(store._idx() + ".new")))
try:
    json.load(open({str(section)!r}))
    print("PARSED")
except MemoryError:
    print("TOO BIG")
"""
    result = mcu.run(code, heap=STREAM_HEAP)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = int(result.lines("INDEXED")[0])
    whole = catalogue.load()
    assert lines == 1 + len(whole["products"]) + len(whole["ingredients"])
    assert result.lines("TOO BIG") == [""]   # the same text parsed whole runs that heap out
