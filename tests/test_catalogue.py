"""The shipped catalogue holds the public lists it names, evaluates statuses by
date the same way under CPython and MicroPython, and refuses malformed data."""

import copy
import json
from pathlib import Path

import pytest

from protocols import catalogue

ROOT = Path(__file__).resolve().parents[1]
VECTORS = json.loads((ROOT / "protocols" / "vectors" / "catalogue.json").read_text("utf-8"))
DATA = catalogue.load()

BANNED_46 = ("六六六 滴滴涕 毒杀芬 二溴氯丙烷 杀虫脒 二溴乙烷 除草醚 艾氏剂 狄氏剂 汞制剂 砷类 铅类 敌枯双 氟乙酰胺 甘氟 "
             "毒鼠强 氟乙酸钠 毒鼠硅 甲胺磷 对硫磷 甲基对硫磷 久效磷 磷胺 苯线磷 地虫硫磷 甲基硫环磷 磷化钙 磷化镁 磷化锌 "
             "硫线磷 蝇毒磷 治螟磷 特丁硫磷 氯磺隆 胺苯磺隆 甲磺隆 福美胂 福美甲胂 三氯杀螨醇 林丹 硫丹 溴甲烷 氟虫胺 杀扑磷 "
             "百草枯 2,4-滴丁酯").split()
RESTRICTED_2017 = ("甲拌磷 甲基异柳磷 克百威 磷化铝 硫丹 氯化苦 灭多威 灭线磷 水胺硫磷 涕灭威 溴甲烷 氧乐果 百草枯 2,4-滴丁酯 "
                   "C型肉毒梭菌毒素 D型肉毒梭菌毒素 氟鼠灵 敌鼠钠盐 杀鼠灵 杀鼠醚 溴敌隆 溴鼠灵 丁硫克百威 丁酰肼 毒死蜱 "
                   "氟苯虫酰胺 氟虫腈 乐果 氰戊菊酯 三氯杀螨醇 三唑磷 乙酰甲胺磷").split()

RUNNER = r'''
def _set(root, path, value):
    parts = path.split(".")
    node = root
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def status_results(catalogue_module, data, vectors):
    out = []
    for case in vectors["status"]:
        out.append(catalogue_module.status_on(data, data["products"][case["product"]], case["date"]))
    return out


def bad_results(catalogue_module, load_copy, vectors):
    out = []
    for case in vectors["bad"]:
        data = load_copy()
        _set(data, case["path"], case["value"])
        try:
            catalogue_module.check(data)
            out.append(None)
        except catalogue_module.CatalogueError as e:
            out.append(e.code)
    return out
'''
_NS = {}
exec(RUNNER, _NS)


def _by_zh():
    return {ing["zh"]: key for key, ing in DATA["ingredients"].items()}


def test_catalogue_holds_the_46_banned_pesticides_all_banned_by_2024():
    by_zh = _by_zh()
    assert len(BANNED_46) == 46
    for zh in BANNED_46:
        key = by_zh[zh]
        assert "banned-46" in DATA["ingredients"][key]["lists"], zh
        probe = {"ingredients": {key: 1}}
        assert catalogue.status_on(DATA, probe, "2024-01-01")["status"] == "banned", zh
    assert sum("banned-46" in ing.get("lists", []) for ing in DATA["ingredients"].values()) == 46


def test_catalogue_holds_the_2017_restricted_list_with_the_first_22_designated():
    by_zh = _by_zh()
    assert len(RESTRICTED_2017) == 32
    for position, zh in enumerate(RESTRICTED_2017):
        key = by_zh[zh]
        state = catalogue.status_on(DATA, {"ingredients": {key: 1}}, "2017-10-01")
        assert state["status"] == "restricted", zh
        assert state["designated"] == (position < 22), zh
        assert catalogue.status_on(DATA, {"ingredients": {key: 1}}, "2017-09-30")["status"] != "restricted", zh


def test_every_status_entry_names_a_source_listed_in_the_file():
    for key, ing in DATA["ingredients"].items():
        for entry in ing["status"]:
            assert entry["source"] in DATA["sources"], key
    assert "MoA-2567" in DATA["sources"] and "MARA-list-2019" in DATA["sources"]


def test_every_product_is_marked_as_a_sample_with_valid_barcodes():
    for key, prod in DATA["products"].items():
        assert prod["sample"] is True, key
        for pack in prod["packs"].values():
            assert catalogue.ean_valid(pack["ean"])


def test_status_vectors_hold_under_cpython():
    got = _NS["status_results"](catalogue, DATA, VECTORS)
    assert got == [case["expect"] for case in VECTORS["status"]]


def test_bad_catalogues_are_refused_under_cpython():
    got = _NS["bad_results"](catalogue, lambda: copy.deepcopy(DATA), VECTORS)
    assert got == ["catalogue_invalid"] * len(VECTORS["bad"])


def test_catalogue_vectors_hold_under_micropython(micropython):
    code = RUNNER + r'''
import json, sys
from protocols import catalogue
vectors = json.load(open("/lib/protocols/vectors/catalogue.json"))
data = catalogue.load()
print(sys.implementation.name)
print(json.dumps(status_results(catalogue, data, vectors)))
print(json.dumps(bad_results(catalogue, catalogue.load, vectors)))
'''
    result = micropython(code)
    assert result.returncode == 0, result.stderr
    name, status, bad = result.stdout.strip().split("\n")
    assert name == "micropython"
    assert json.loads(status) == [case["expect"] for case in VECTORS["status"]]
    assert json.loads(bad) == ["catalogue_invalid"] * len(VECTORS["bad"])


def test_pack_lookup_and_label_keys():
    prod, pack = catalogue.pack(DATA, "XK13-001-00101", "002")
    assert pack["net"] == 50000 and prod["nutrients"]["N"] == 460000
    assert catalogue.pack(DATA, "XK13-001-00101", "009") == (None, None)
    assert catalogue.label_key("PD20092927") == ("PD", "092927")
    assert catalogue.label_key("XK13-001-00101") is None
    index = catalogue.Index(DATA)
    assert index.label("PD", "080201") == ["PD20080201"]
    assert index.ean(pack["ean"]) == ("XK13-001-00101", "002")


@pytest.mark.parametrize("code,valid", [("6901234567892", True), ("6901234567891", False), ("690123456789", False),
                                        ("69012345678a2", False)])
def test_ean13_check_digit(code, valid):
    assert catalogue.ean_valid(code) is valid


def test_catalogue_error_names_the_path():
    data = copy.deepcopy(DATA)
    data["products"]["PD20080101"]["packs"]["001"]["net"] = 2.5
    with pytest.raises(catalogue.CatalogueError) as err:
        catalogue.check(data)
    assert err.value.code == "catalogue_invalid"
    assert "products.PD20080101.packs.001.net" in err.value.detail
