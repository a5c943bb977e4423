"""The card-only terminal reads only its cart's products from the synced
catalogue (firmware/mcu/sync.py catalogue.idx): under MicroPython, for every
product of the shipped catalogue and every pack, the policy decides exactly as
it does with the whole catalogue, and the cut-down catalogue is a fraction of
the whole one in RAM."""

from __future__ import annotations

import json

from tests.support import mcu
from tests.support import quota_fixtures as fx


def test_cut_down_catalogue_gives_the_whole_catalogue_s_decisions(tmp_path):
    params = fx.params()
    subject = fx.subjects({"S-C-0001": 50})[0]
    code = f"""
import gc, json, sync
from protocols import authz, catalogue, policy
full = catalogue.load()
store = sync.ConfigStore({str(tmp_path / "config")!r}, "M001", b"k" * 32)
store._versions["catalogue"] = 5
store._write_index(5, full)
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
