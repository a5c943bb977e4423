"""Product catalogue: what a scanned pack is, and whether it may be sold on a date.

The catalogue is plain JSON data (protocols/data/catalogue.json, docs/catalogue.md)
so the gateway can push new versions to terminals and the MicroPython terminal can
read it without a schema library. Products are keyed by registration number and
pack specification code, the same pair the label QR code of MoA Announcement
No. 2579 carries, so a scan maps to exactly one entry.

A product's status is not stored as one fixed word: bans and restrictions come by
announcement with an effective date (百草枯水剂 banned from 2016-07-01, the
2,4-滴丁酯 ban from 2023-01-29 ...), so each ingredient carries dated status
entries and `status_on` evaluates them for the sale's date. A terminal whose copy is
a few weeks old therefore still refuses a product banned in the meantime, as long
as the ban was announced when its copy was made.

Quantities are integers (no floats cross the wire): pack net content in g or mL,
ingredient and nutrient content in mg per kg (solids) or mg per L (liquids).
"""

import json

from protocols.reasons import ReasonError, register

NORMAL = "normal"
RESTRICTED = "restricted"
BANNED = "banned"
_SEVERITY = {NORMAL: 0, RESTRICTED: 1, BANNED: 2}

KINDS = ("pesticide", "fertilizer")
UNITS = ("g", "mL")
NUTRIENTS = ("N", "P2O5", "K2O")
MAX_CONTENT = 2000000  # mg per kg or per L; dense liquids declared in g/L can pass 1e6
MAX_NET = 1000000  # g or mL in one pack: 1 t bulk bags are the largest seen at a counter

REASONS = register({
    "unknown_product": (
        "目录中查无此产品或规格：请重新扫码或更新产品目录",
        "Product or pack not in the catalogue: rescan or update the catalogue",
    ),
    "catalogue_invalid": (
        "产品目录数据有误，请联系管理员",
        "The product catalogue data is malformed: contact the administrator",
    ),
})


class CatalogueError(ReasonError):
    """The catalogue data breaks its own rules; detail names the offending path."""


def default_path():
    """Where the shipped sample sits, next to this module on CPython and MicroPython."""
    try:
        here = __file__
    except NameError:  # frozen into firmware: no file system path
        here = "/lib/protocols/catalogue.py"
    cut = here.replace("\\", "/").rfind("/")
    return (here[:cut] if cut >= 0 else ".") + "/data/catalogue.json"


def load(path=None):
    """Read and check a catalogue file; a bad file fails here, not at the counter."""
    with open(path or default_path()) as f:
        data = json.load(f)
    check(data)
    return data


def _fail(path, problem):
    raise CatalogueError("catalogue_invalid", "%s: %s" % (path, problem))


def _is_int(value, lo, hi):
    return type(value) is int and lo <= value <= hi


def _is_date(value):
    return (isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-"
            and (value[0:4] + value[5:7] + value[8:10]).isdigit())


def _check_entries(entries, path):
    if not isinstance(entries, list):
        _fail(path, "expected a list of status entries")
    for i, entry in enumerate(entries):
        where = "%s[%d]" % (path, i)
        if not isinstance(entry, dict) or entry.get("status") not in _SEVERITY:
            _fail(where, "status must be normal, restricted or banned")
        if not _is_date(entry.get("from")):
            _fail(where + ".from", "expected YYYY-MM-DD")
        if "until" in entry and not _is_date(entry["until"]):
            _fail(where + ".until", "expected YYYY-MM-DD")
        if "forms" in entry and not isinstance(entry["forms"], list):
            _fail(where + ".forms", "expected a list of formulation codes")


def _check_contents(contents, allowed, path):
    if not isinstance(contents, dict):
        _fail(path, "expected an object")
    for name in contents:
        if allowed is not None and name not in allowed:
            _fail(path + "." + name, "unknown")
        if not _is_int(contents[name], 0, MAX_CONTENT):
            _fail(path + "." + name, "expected integer mg per kg or per L, 0..%d" % MAX_CONTENT)


def check(data):
    """Validate the whole catalogue once, at load or at config sync."""
    if not isinstance(data, dict) or type(data.get("version")) is not int:
        _fail("version", "expected integer")
    ingredients = data.get("ingredients")
    products = data.get("products")
    if not isinstance(ingredients, dict) or not isinstance(products, dict):
        _fail("catalogue", "needs ingredients and products objects")
    for name in ingredients:
        check_ingredient(name, ingredients[name])
    eans = {}
    for key in products:
        check_product(key, products[key], ingredients, eans)
    return data


# `check` an entry at a time, for a terminal that cannot hold the whole
# catalogue parsed (firmware/mcu/sync.py streams it from flash): the ingredients
# first (canonical order puts them before the products), then each product
# against their names and the EANs seen so far.

def check_ingredient(name, entry):
    if not isinstance(entry, dict):
        _fail("ingredients." + name, "expected an object")
    _check_entries(entry.get("status", []), "ingredients.%s.status" % name)


def check_product(key, prod, ingredients, eans):
    """`ingredients`: the catalogue's ingredient names (a dict or a set);
    `eans`: EAN -> "product/spec" of the products checked before, added to."""
    where = "products." + key
    if not _is_id(key):
        _fail(where, "key must be 1-64 of A-Z a-z 0-9 _ - . :")
    if not isinstance(prod, dict) or prod.get("kind") not in KINDS:
        _fail(where + ".kind", "expected pesticide or fertilizer")
    _check_contents(prod.get("ingredients", {}), ingredients, where + ".ingredients")
    _check_contents(prod.get("nutrients", {}), NUTRIENTS, where + ".nutrients")
    _check_entries(prod.get("status", []), where + ".status")
    packs = prod.get("packs")
    if not isinstance(packs, dict) or not packs:
        _fail(where + ".packs", "expected at least one pack")
    for spec in packs:
        pack = packs[spec]
        pwhere = "%s.packs.%s" % (where, spec)
        if not (len(spec) == 3 and spec.isdigit()):
            _fail(pwhere, "spec code must be 3 digits (label code digits 9-11)")
        if not _is_int(pack.get("net"), 1, MAX_NET):
            _fail(pwhere + ".net", "expected integer g or mL, 1..%d" % MAX_NET)
        if pack.get("unit") not in UNITS:
            _fail(pwhere + ".unit", "expected g or mL")
        ean = pack.get("ean")
        if ean is not None:
            if not ean_valid(ean):
                _fail(pwhere + ".ean", "not a valid EAN-13")
            if ean in eans:
                _fail(pwhere + ".ean", "also used by " + eans[ean])
            eans[ean] = key + "/" + spec


_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:"


def _is_id(value):
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return False
    for ch in value:
        if ch not in _ID_CHARS:
            return False
    return True


def ean_check_digit(first12):
    """GS1 mod-10: weights 1,3,1,3... from the left over the first 12 digits."""
    total = 0
    for i in range(12):
        total += int(first12[i]) * (3 if i % 2 else 1)
    return (10 - total % 10) % 10


def ean_valid(code):
    return (isinstance(code, str) and len(code) == 13 and code.isdigit()
            and ean_check_digit(code[:12]) == int(code[12]))


def pack(data, product, spec):
    """(product entry, pack entry), or (None, None) when either is unknown."""
    prod = data["products"].get(product)
    if prod is None:
        return None, None
    entry = prod["packs"].get(spec)
    if entry is None:
        return None, None
    return prod, entry


def _applies(entry, form, date):
    if entry["from"] > date:
        return False
    until = entry.get("until")
    if until is not None and date >= until:
        return False
    forms = entry.get("forms")
    return forms is None or form in forms


def status_on(data, prod, date):
    """The product's status on `date` (YYYY-MM-DD) as a dict:

    status: worst of the product's own entries and each ingredient's entries;
    designated: a restricted entry demands a designated shop (定点经营: the first 22
    of the 2017 list); restricted: the ingredient ids that are restricted that day,
    which a permit must cover. Worst-wins, because an announcement never lifts an
    older ban by being newer; a lifted restriction gets an `until` instead.
    """
    form = prod.get("form")
    worst = NORMAL
    designated = False
    restricted = []
    sources = [(None, prod.get("status", []))]
    ingredients = data["ingredients"]
    for name in sorted(prod.get("ingredients", {})):
        sources.append((name, ingredients[name].get("status", [])))
    for name, entries in sources:
        for entry in entries:
            if not _applies(entry, form, date):
                continue
            level = entry["status"]
            if _SEVERITY[level] > _SEVERITY[worst]:
                worst = level
            if level == RESTRICTED:
                if entry.get("designated"):
                    designated = True
                if name is not None and name not in restricted:
                    restricted.append(name)
    return {"status": worst, "designated": designated, "restricted": restricted}


class Index:
    """Lookups a scanner needs (EAN, label code) built once per catalogue version."""

    def __init__(self, data):
        self.data = data
        self.by_ean = {}
        self.by_label = {}
        products = data["products"]
        for key in sorted(products):
            prod = products[key]
            for spec in prod["packs"]:
                ean = prod["packs"][spec].get("ean")
                if ean:
                    self.by_ean[ean] = (key, spec)
            label = label_key(key)
            if label is not None:
                self.by_label.setdefault(label, []).append(key)

    def ean(self, code):
        return self.by_ean.get(code)

    def label(self, prefix, last6):
        return self.by_label.get((prefix, last6), [])


def label_key(reg):
    """(class prefix, last six digits) as a pesticide label code carries them, or None.

    Only PD/WP/LS numbers appear on label codes; the digits are taken after the
    two-letter prefix, so PD20092927 gives ("PD", "092927").
    """
    prefix = reg[:2]
    if prefix not in ("PD", "WP", "LS"):
        return None
    digits = ""
    for ch in reg[2:]:
        if ch.isdigit():
            digits += ch
    if len(digits) < 6:
        return None
    return (prefix, digits[-6:])
