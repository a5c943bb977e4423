"""A district in a box: towns, villages, shops, subjects with plots and signed
cards, the products they buy, and when they buy them, all generated from a seed
and a size, so a failing run replays exactly and a demo shows the same district
every time.

The default is Linping District, Hangzhou (临平区, code 330113) with its real
seven streets and one town (临平、东湖、南苑、星桥、运河、乔司、崇贤街道, 塘栖镇) at
their approximate centres. What is *generated*, and says nothing about the real
district: the 9-digit town codes (330113001.. in the order listed, following the
statistical code pattern but not the official numbers), the 12-digit village
codes and village names (common place-name syllables + 村), shop names,
licence numbers (农药经许（浙）+ district code + year + serial, the shape of a
Zhejiang pesticide dealer licence), people, plots and cards. Any district works:
pass `code`, `name` and your own `towns`.

Units are the policy's (docs/policy.md): plot areas in hundredths of a mu
(`area_cmu`), so allowances come out of `protocols.policy` exactly as the
gateway computes them. The registry signing key is derived from the seed: a
demo key, never one to issue real cards with.

`purchases_on(district, rng, date)` is the purchase pattern: a pure function of
a seeded `random.Random` and a date (spring planting peak, quieter weekends,
opening hours with a morning rush), so the same seed and date give the same
day at the counters.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from protocols import card as _card, catalogue as _catalogue, policy

DISTRICT_CODE = "330113"
DISTRICT_NAME = "临平区"

# (name, approximate centre lat, lon): Linping's 7 streets (街道) and 1 town (镇).
LINPING_TOWNS = (
    ("临平街道", 30.419, 120.299),
    ("东湖街道", 30.411, 120.330),
    ("南苑街道", 30.396, 120.302),
    ("星桥街道", 30.376, 120.251),
    ("运河街道", 30.468, 120.226),
    ("乔司街道", 30.361, 120.292),
    ("崇贤街道", 30.433, 120.184),
    ("塘栖镇", 30.484, 120.186),
)



def synthetic_towns(n: int, centre=(30.42, 120.27), spacing_km: float = 4.0) -> tuple:
    """`n` towns on a grid around the district centre, for districts bigger than
    the real one (a benchmark with a thousand shops gives each town about ten,
    as a real town has, instead of a hundred per real street)."""
    side = math.ceil(math.sqrt(n))
    step_lat = spacing_km / 111.0
    step_lon = spacing_km / (111.0 * math.cos(math.radians(centre[0])))
    out = []
    for i in range(n):
        row, col = divmod(i, side)
        out.append((f"第{i + 1}镇", round(centre[0] + (row - side / 2) * step_lat, 4),
                    round(centre[1] + (col - side / 2) * step_lon, 4)))
    return tuple(out)


# Crops with norms in the shipped policy params, weighted roughly as Linping
# grows them: paddy rice first, then vegetables, tea and orchards.
CROPS = (("rice", 45), ("vegetable", 30), ("tea", 10), ("citrus", 15))
KINDS = (("farmer", 85), ("family_farm", 10), ("cooperative", 5))
# Area per subject in cmu (hundredths of a mu), by kind: smallholders hold a few
# mu; family farms tens; cooperatives hundreds (docs/policy.md: 500 mu at 20 kg N/mu
# still fits a small int on the MicroPython terminal).
AREA_CMU = {"farmer": (100, 1500), "family_farm": (3000, 20000), "cooperative": (10000, 60000)}
NO_PLOT_SHARE = 0.04     # registered but no plots yet: their fertilizer is refused (quota_not_set)
HOURS = ("07:30-12:00,13:00-18:30", "07:00-18:00", "08:00-12:00,13:30-18:00", "07:00-19:30")
SYLLABLES = "东西南北上下新红星桥河塘湖山茶桑荷梅柳竹石云金玉丰和安泰宁永兴隆景"
SURNAMES = "王李张陈沈徐朱周吴钱孙胡施姚蔡顾杨俞高褚"
GIVEN = "建国明华伟芳英林强平秀兰红军海燕德福根宝金梅志勇"

# Purchase pattern: expected customers per shop per day before the factors below
# (a village shop in the spring rush sees some fifty buyers a day).
BASE_PER_SHOP_DAY = 25
# Spring planting (March-May) is the peak for fertilizer; summer brings pests.
MONTH_FACTOR = {1: 0.3, 2: 0.5, 3: 1.6, 4: 2.0, 5: 1.5, 6: 1.2, 7: 1.0, 8: 0.8, 9: 0.7, 10: 0.9, 11: 0.5, 12: 0.3}
# Shops open every day; weekends are quieter because cooperatives buy on workdays.
WEEKDAY_FACTOR = (1.0, 1.0, 1.0, 1.0, 1.0, 0.85, 0.7)


@dataclass(frozen=True)
class Town:
    code: str
    name: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Village:
    code: str
    name: str
    town: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Shop:
    id: str
    name: str
    village: str
    town: str
    licence: str
    designated: bool
    hours: str
    lat: float
    lon: float
    address: str
    terminal: str


@dataclass(frozen=True)
class SubjectCard:
    card_no: str
    uid: bytes
    payload: bytes       # signed by the registry key, bound to the UID (protocols/card.py)
    issued: str
    expires: str


@dataclass(frozen=True)
class Subject:
    id: str
    kind: str            # farmer, family_farm, cooperative
    name: str
    town: str
    village: str
    home_shop: str       # the shop the subject usually buys at (nearest in its town)
    plots: tuple         # ({"id", "crop", "area_cmu"}, ...)
    permits: tuple       # ({"id", "ingredients", "until"}, ...)
    card: SubjectCard
    group: str | None = None   # household of farmers who buy for each other (split_purchase_group)

    def entry(self) -> dict:
        """The registry entry (`gateway subjects import`, JSON lines)."""
        out = {"id": self.id, "status": "active", "town": self.town, "name": self.name, "kind": self.kind,
               "village": self.village, "plots": [dict(p) for p in self.plots]}
        if self.group:
            out["group"] = self.group
        if self.permits:
            out["permits"] = [dict(p, ingredients=list(p["ingredients"])) for p in self.permits]
        return out


@dataclass(frozen=True)
class Product:
    key: str             # registration number (catalogue key)
    spec: str
    kind: str            # pesticide, fertilizer
    name: str
    ean: str
    unit: str
    net: int


@dataclass(frozen=True)
class Purchase:
    minute: int          # minute of the local day (China time) the buyer is at the counter
    shop: str
    subject: str
    lines: tuple         # ((product, spec, packs, ean), ...)


@dataclass
class District:
    code: str
    name: str
    seed: int
    towns: list[Town]
    villages: list[Village]
    shops: list[Shop]
    subjects: list[Subject]
    products: list[Product]
    registry_seed: bytes = field(repr=False)
    catalogue: dict = field(repr=False, default_factory=dict)
    params: dict = field(repr=False, default_factory=dict)

    def __post_init__(self):
        self._shops = {s.id: s for s in self.shops}
        self._subjects = {s.id: s for s in self.subjects}
        self._customers: dict[str, list[Subject]] = {}
        for s in self.subjects:
            self._customers.setdefault(s.home_shop, []).append(s)

    def shop(self, shop_id: str) -> Shop:
        return self._shops[shop_id]

    def subject(self, subject_id: str) -> Subject:
        return self._subjects[subject_id]

    def customers(self, shop_id: str) -> list[Subject]:
        return self._customers.get(shop_id, [])

    @property
    def registry_public_key(self) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        key = Ed25519PrivateKey.from_private_bytes(self.registry_seed)
        return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def allowance(self, subject_id: str, category: str, date: str) -> int:
        """The subject's allowance as the policy computes it (gateway and terminal alike)."""
        period = policy.period_of(self.params, category, date)
        return policy.allowance(self.subject(subject_id).entry(), self.params, category, period)

    # -- the files the gateway's import commands read

    def grid_toml(self) -> str:
        """`python -m gateway grid import FILE` (format in gateway/supervision/grid.py). `licence`
        is extra: the grid keeps no licence column yet, the import ignores it."""
        q = lambda s: json.dumps(s, ensure_ascii=False)  # a JSON string is a TOML basic string
        out = [f"# {self.name} ({self.code}), generated with seed {self.seed}: see simulator/district.py\n"]
        out.append(f'[[areas]]\ncode = {q(self.code)}\nlevel = "district"\nname = {q(self.name)}\n')
        for t in self.towns:
            out.append(f'[[areas]]\ncode = {q(t.code)}\nlevel = "town"\nname = {q(t.name)}\nparent = {q(self.code)}\n')
        for v in self.villages:
            out.append(f'[[areas]]\ncode = {q(v.code)}\nlevel = "village"\nname = {q(v.name)}\nparent = {q(v.town)}\n')
        for s in self.shops:
            out.append(f"[[shops]]\nid = {q(s.id)}\nname = {q(s.name)}\nvillage = {q(s.village)}\n"
                       f"designated = {'true' if s.designated else 'false'}\nhours = {q(s.hours)}\n"
                       f"lat = {s.lat:.5f}\nlon = {s.lon:.5f}\naddress = {q(s.address)}\nlicence = {q(s.licence)}\n")
        return "\n".join(out)

    def subjects_jsonl(self) -> str:
        """`python -m gateway subjects import FILE` (JSON lines, one subject per line)."""
        return "".join(json.dumps(s.entry(), ensure_ascii=False, sort_keys=True) + "\n" for s in self.subjects)

    def cards_json(self) -> str:
        """Every card as issued: for writing real cards (`python -m hardware pn532
        issue`) or loading the PN532 emulator."""
        cards = [{"subject": s.id, "card_no": s.card.card_no, "uid": s.card.uid.hex(),
                  "payload": s.card.payload.hex(), "issued": s.card.issued, "expires": s.card.expires}
                 for s in self.subjects]
        return json.dumps({"registry_public_key": self.registry_public_key.hex(), "cards": cards}, indent=1)

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Write grid.toml, subjects.jsonl, policy.json, catalogue.json, cards.json
        and terminals.json (one terminal per shop) into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = {
            "grid": (directory / "grid.toml", self.grid_toml()),
            "subjects": (directory / "subjects.jsonl", self.subjects_jsonl()),
            "policy": (directory / "policy.json", json.dumps(self.params, ensure_ascii=False, indent=1)),
            "catalogue": (directory / "catalogue.json", json.dumps(self.catalogue, ensure_ascii=False, indent=1)),
            "cards": (directory / "cards.json", self.cards_json()),
            "terminals": (directory / "terminals.json",
                          json.dumps({s.terminal: s.id for s in self.shops}, indent=1)),
        }
        for path, text in files.values():
            path.write_text(text, "utf-8")
        return {name: path for name, (path, _) in files.items()}


def _weighted(rng: random.Random, table) -> str:
    return rng.choices([k for k, _ in table], weights=[w for _, w in table])[0]


def _near(rng: random.Random, lat: float, lon: float, km: float) -> tuple[float, float]:
    """A point within `km` of (lat, lon); 1° of latitude is 111 km."""
    r, a = km * math.sqrt(rng.random()), rng.random() * 2 * math.pi
    return (round(lat + r * math.cos(a) / 111.0, 5),
            round(lon + r * math.sin(a) / (111.0 * math.cos(math.radians(lat))), 5))


def _person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def _distance2(a, b) -> float:
    return (a.lat - b.lat) ** 2 + (a.lon - b.lon) ** 2


def load_products(data: dict) -> list[Product]:
    out = []
    for key in sorted(data["products"]):
        prod = data["products"][key]
        for spec in sorted(prod["packs"]):
            pack = prod["packs"][spec]
            if pack.get("ean"):
                out.append(Product(key, spec, prod["kind"], prod["name"], pack["ean"], pack["unit"], pack["net"]))
    return out


def shipped_params() -> dict:
    path = Path(_catalogue.default_path()).parent / "policy_params.json"
    return json.loads(path.read_text("utf-8"))


def generate(seed: int = 1, shops: int = 20, subjects: int | None = None, villages: int | None = None,
             code: str = DISTRICT_CODE, name: str = DISTRICT_NAME, towns=LINPING_TOWNS,
             catalogue: dict | None = None, params: dict | None = None) -> District:
    """A district of `shops` shops (one terminal each) and `subjects` subjects
    (default 60 per shop: a village shop's regular customers), in `villages`
    villages (default: as many as shops, at least one per town)."""
    if shops < 1:
        raise ValueError("a district needs at least one shop")
    rng = random.Random(seed)
    subjects = 60 * shops if subjects is None else subjects
    villages = max(len(towns), shops) if villages is None else max(villages, 1)
    catalogue = catalogue or _catalogue.load()
    params = params or shipped_params()
    norms = params.get("norms", {})
    crops = [(c, w) for c, w in CROPS if c in norms] or [(c, 1) for c in sorted(norms)]

    town_list = [Town(f"{code}{i + 1:03d}", n, lat, lon) for i, (n, lat, lon) in enumerate(towns)]
    village_list: list[Village] = []
    used_names: set[str] = set()
    for i in range(villages):
        town = town_list[i % len(town_list)]
        serial = sum(1 for v in village_list if v.town == town.code) + 1
        while True:
            vname = rng.choice(SYLLABLES) + rng.choice(SYLLABLES) + "村"
            if vname not in used_names:
                used_names.add(vname)
                break
        lat, lon = _near(rng, town.lat, town.lon, 3.0)
        village_list.append(Village(f"{town.code}{serial:03d}", vname, town.code, lat, lon))

    shop_list: list[Shop] = []
    for i in range(shops):
        village = village_list[i % len(village_list)]
        lat, lon = _near(rng, village.lat, village.lon, 0.8)
        sid = f"SHOP-{code}-{i + 1:03d}"
        year = rng.randint(2018, 2024)
        shop_list.append(Shop(
            id=sid, name=f"{village.name}{rng.choice(('农资店', '农资经营部', '农资服务社', '庄稼医院'))}",
            village=village.code, town=village.town,
            licence=f"农药经许（浙）{code}{year}{i + 1:04d}",
            designated=i % 5 == 0,  # about one shop in five holds a restricted-use licence; never none
            hours=rng.choice(HOURS), lat=lat, lon=lon,
            address=f"{name}{next(t.name for t in town_list if t.code == village.town)}{village.name}"
                    f"{rng.randint(1, 200)}号",
            terminal=f"T{code}{i + 1:03d}"))

    registry_seed = bytes(rng.getrandbits(8) for _ in range(32))
    # restricted-use ingredients the shipped params give a rice norm for
    permit_ingredients = [i for i in ("carbofuran", "omethoate") if i in catalogue["ingredients"]]
    subject_list: list[Subject] = []
    for i in range(subjects):
        village = rng.choice(village_list)
        kind = _weighted(rng, KINDS)
        sid = f"S-{code}-{i + 1:05d}"
        if kind == "farmer":
            sname = _person(rng)
        elif kind == "family_farm":
            sname = f"{village.name}{_person(rng)}家庭农场"
        else:
            sname = f"{name}{village.name}{rng.choice(('粮油', '蔬菜', '茶叶', '果蔬'))}专业合作社"
        plots = []
        if not (kind == "farmer" and rng.random() < NO_PLOT_SHARE):
            lo, hi = AREA_CMU[kind]
            total = rng.randint(lo, hi) // 10 * 10
            count = rng.randint(1, {"farmer": 3, "family_farm": 4, "cooperative": 6}[kind])
            cuts = sorted(rng.randint(1, total - 1) for _ in range(count - 1)) if total > count else []
            bounds = [0] + cuts + [total]
            for n in range(len(bounds) - 1):
                area = bounds[n + 1] - bounds[n]
                if area > 0:
                    plots.append({"id": f"P{n + 1}", "crop": _weighted(rng, crops), "area_cmu": area})
        permits = []
        if kind != "farmer" and permit_ingredients and any(p["crop"] == "rice" for p in plots) and rng.random() < 0.4:
            permits.append({"id": f"PMT-{code}-{i + 1:05d}", "ingredients": (rng.choice(permit_ingredients),),
                            "until": "2030-12-31"})
        town_shops = [s for s in shop_list if s.town == village.town] or shop_list
        home = min(town_shops, key=lambda s: _distance2(s, village))
        issued = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 364))
        expires = issued + dt.timedelta(days=3652)  # ten years: the demo's cards stay valid
        uid = bytes([0x04]) + bytes(rng.getrandbits(8) for _ in range(6))  # NTAG21x: 7-byte UID, NXP 0x04
        card_no = f"C{code}{i + 1:06d}"
        payload = _card.issue(_card.Card(uid, sid, card_no, code, issued.isoformat(), expires.isoformat()),
                              registry_seed)
        subject_list.append(Subject(sid, kind, sname, village.town, village.code, home.id, tuple(plots),
                                    tuple(permits), SubjectCard(card_no, uid, payload, issued.isoformat(),
                                                                expires.isoformat())))
    subject_list = _households(random.Random(f"{seed}-households"), subject_list)
    return District(code, name, seed, town_list, village_list, shop_list, subject_list, load_products(catalogue),
                    registry_seed, catalogue, params)


def _households(rng: random.Random, subjects: list[Subject]) -> list[Subject]:
    """About a third of the farmers share a household with one or two others of
    their village (registered separately, each with plots of their own). Drawn
    from a random stream of its own, so the rest of the district is what it was."""
    by_village: dict[str, list[int]] = {}
    for i, s in enumerate(subjects):
        if s.kind == "farmer":
            by_village.setdefault(s.village, []).append(i)
    out = list(subjects)
    for village, members in sorted(by_village.items()):
        rng.shuffle(members)
        n = 0
        while len(members) >= 2:
            if rng.random() >= 0.15:
                members = members[1:]
                continue
            size = min(len(members), rng.choice((2, 2, 3)))
            n += 1
            for i in members[:size]:
                out[i] = dataclasses.replace(out[i], group=f"HH{village}{n:03d}")
            members = members[size:]
    return out


# ---------------------------------------------------------------- purchase pattern

def day_factor(date: dt.date) -> float:
    return MONTH_FACTOR[date.month] * WEEKDAY_FACTOR[date.weekday()]


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 60:  # normal approximation: exp(-lam) underflows the product method's precision
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def opening_spans(hours: str) -> list[tuple[int, int]]:
    """"07:30-12:00,13:00-18:30" -> [(450, 720), (780, 1110)], minutes of the day."""
    spans = []
    for part in hours.split(","):
        a, b = part.split("-")
        spans.append((int(a[:2]) * 60 + int(a[3:]), int(b[:2]) * 60 + int(b[3:])))
    return spans


def is_open(shop: Shop, minute: int) -> bool:
    return any(a <= minute < b for a, b in opening_spans(shop.hours))


def _minute(rng: random.Random, hours: str) -> int:
    """A minute within opening hours, busier in the first hours (farmers buy
    before going out to the fields): a triangular draw with its mode at opening."""
    spans = opening_spans(hours)
    start, end = rng.choices(spans, weights=[b - a for a, b in spans])[0]
    return min(end - 1, int(rng.triangular(start, end, start)))


def _pools(district: District, date: str) -> dict:
    """Products by kind, and pesticides by their status on the date."""
    pools: dict = {"fertilizer": [], "normal": [], "restricted": [], "banned": []}
    for p in district.products:
        if p.kind == "fertilizer":
            pools["fertilizer"].append(p)
        else:
            prod = district.catalogue["products"][p.key]
            pools[_catalogue.status_on(district.catalogue, prod, date)["status"]].append(p)
    return pools


def _cart(rng: random.Random, pools: dict, subject: Subject, month: int) -> tuple:
    mu = sum(p["area_cmu"] for p in subject.plots) / 100 or 2.0
    lines = []
    if rng.random() < (0.8 if month in (3, 4, 5, 6) else 0.5) and pools["fertilizer"]:
        p = rng.choice(pools["fertilizer"])
        bag_kg = p.net / 1000
        # a few kg of product per mu per visit, in whole bags
        packs = max(1, min(40, round(mu * rng.uniform(3, 12) / bag_kg))) if bag_kg >= 10 else rng.randint(1, 5)
        lines.append((p.key, p.spec, packs, p.ean))
    if not lines or rng.random() < (0.6 if month in (6, 7, 8) else 0.35):
        roll = rng.random()
        # mostly normal products; now and then a restricted-use one (refused without
        # a face check or a permit); rarely a farmer asks for a banned one.
        want = "banned" if roll < 0.02 else "restricted" if roll < 0.10 else "normal"
        pool = pools[want] or pools["normal"]
        if pool:
            p = rng.choice(pool)
            lines.append((p.key, p.spec, rng.randint(1, 3), p.ean))
    return tuple(lines)


def purchases_on(district: District, rng: random.Random, date: dt.date | str) -> list[Purchase]:
    """Who buys what, where and when on `date`, in time order. Pure: the same rng
    state and date give the same list."""
    if isinstance(date, str):
        date = dt.date.fromisoformat(date)
    iso = date.isoformat()
    factor = day_factor(date)
    pools = _pools(district, iso)
    town_subjects: dict[str, list[Subject]] = {}
    for s in district.subjects:
        town_subjects.setdefault(s.town, []).append(s)
    out = []
    for shop in district.shops:
        regulars = district.customers(shop.id)
        town = town_subjects.get(shop.town, [])
        for _ in range(_poisson(rng, BASE_PER_SHOP_DAY * factor)):
            pool = regulars if regulars and rng.random() < 0.9 else (town or district.subjects)
            subject = rng.choice(pool)
            lines = _cart(rng, pools, subject, date.month)
            if lines:
                out.append(Purchase(_minute(rng, shop.hours), shop.id, subject.id, lines))
    out.sort(key=lambda p: (p.minute, p.shop, p.subject))
    return out
