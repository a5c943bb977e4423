"""The supervision grid: district -> town (镇街) -> village (村社) areas, and the
shops in them with what the rules need to know about each (designated for
restricted-use pesticides, opening hours, location).

Shops carry their town and district codes denormalised next to the village, so
"everything a town inspector may see" is one indexed equality, not a walk up a
tree on every query: the dashboard's queries filter on it millions of times.
The registry is imported from a TOML file (`python -m gateway grid import`),
validated as a whole before anything is written, so a bad file changes nothing;
the rows themselves are the store's (gateway/store/grid.py).

    [[areas]]
    code = "330113"      level = "district"  name = "临平区"
    [[areas]]
    code = "330113001"   level = "town"      name = "临平街道"   parent = "330113"
    [[areas]]
    code = "330113001001" level = "village"  name = "东湖村"     parent = "330113001"
    [[shops]]
    id = "SHOP001"  name = "东湖农资店"  village = "330113001001"  designated = true
    hours = "07:30-12:00,13:00-18:30"  lat = 30.42  lon = 120.30
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

from gateway.store import grid as grid_store, registry as registry_store, sales, transaction
from gateway.store.grid import area_names  # noqa: F401  (gateway/api reads the names from here)
from protocols.schema import is_id

LEVELS = ("district", "town", "village")
PARENT_LEVEL = {"town": "district", "village": "town"}


class GridError(ValueError):
    """A registry file that breaks its own rules; the message names file and key."""


def parse_hours(text: str) -> list[tuple[int, int]]:
    """"07:30-12:00,13:00-18:30" -> [(450, 720), (780, 1110)] minutes of the day.
    Empty means "no opening hours on record": the hours rule then stays quiet,
    because a shop we know nothing about is not a violation."""
    spans = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            start, end = part.split("-")
            h1, m1 = (int(x) for x in start.split(":"))
            h2, m2 = (int(x) for x in end.split(":"))
        except ValueError:
            raise GridError(f"opening hours {part!r}: expected HH:MM-HH:MM") from None
        a, b = h1 * 60 + m1, h2 * 60 + m2
        if not (0 <= a < b <= 24 * 60 and m1 < 60 and m2 < 60):
            raise GridError(f"opening hours {part!r}: expected HH:MM-HH:MM within one day")
        spans.append((a, b))
    return spans


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance; roads are longer, which the travel rule's speed allows for."""
    r = 6371.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(a)))


def _validate(data: dict, source: str) -> tuple[list[dict], list[dict]]:
    areas = data.get("areas", [])
    shops_ = data.get("shops", [])
    if not isinstance(areas, list) or not isinstance(shops_, list):
        raise GridError(f"{source}: [[areas]] and [[shops]] must be arrays of tables")
    by_code: dict[str, dict] = {}
    for i, a in enumerate(areas):
        where = f"{source}: areas[{i}]"
        if not isinstance(a, dict):
            raise GridError(f"{where}: expected a table")
        code, level, name = a.get("code"), a.get("level"), a.get("name")
        if not (isinstance(code, str) and is_id(code)):
            raise GridError(f"{where}.code: expected an identifier")
        if level not in LEVELS:
            raise GridError(f"{where}.level: expected one of {', '.join(LEVELS)}")
        if not (isinstance(name, str) and 0 < len(name) <= 100):
            raise GridError(f"{where}.name: expected 1-100 characters")
        if code in by_code:
            raise GridError(f"{where}.code: {code} listed twice")
        by_code[code] = a
    for i, a in enumerate(areas):
        want = PARENT_LEVEL.get(a["level"])
        parent = a.get("parent")
        if want is None:
            if parent is not None:
                raise GridError(f"{source}: areas[{i}].parent: a district has no parent")
            continue
        if parent not in by_code or by_code[parent]["level"] != want:
            raise GridError(f"{source}: areas[{i}].parent: expected the code of a {want} in this file")
    seen = set()
    out_shops = []
    for i, s in enumerate(shops_):
        where = f"{source}: shops[{i}]"
        if not isinstance(s, dict):
            raise GridError(f"{where}: expected a table")
        sid, name, village = s.get("id"), s.get("name"), s.get("village")
        if not (isinstance(sid, str) and is_id(sid)) or sid in seen:
            raise GridError(f"{where}.id: expected a new identifier")
        seen.add(sid)
        if not (isinstance(name, str) and 0 < len(name) <= 100):
            raise GridError(f"{where}.name: expected 1-100 characters")
        if village not in by_code or by_code[village]["level"] != "village":
            raise GridError(f"{where}.village: expected the code of a village in this file")
        if not isinstance(s.get("designated", False), bool):
            raise GridError(f"{where}.designated: expected true or false")
        hours = s.get("hours", "")
        if not isinstance(hours, str):
            raise GridError(f"{where}.hours: expected text like 08:00-18:00")
        try:
            parse_hours(hours)
        except GridError as err:
            raise GridError(f"{where}.hours: {err}") from None
        for key, lo, hi in (("lat", -90, 90), ("lon", -180, 180)):
            v = s.get(key)
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi):
                raise GridError(f"{where}.{key}: expected a number {lo}..{hi}")
        town = by_code[village]["parent"]
        out_shops.append({
            "id": sid, "name": name, "village": village, "town": town, "district": by_code[town]["parent"],
            "designated": int(s.get("designated", False)), "hours": hours,
            "lat": s.get("lat"), "lon": s.get("lon"), "address": str(s.get("address", ""))[:200],
        })
    return list(by_code.values()), out_shops


def import_grid(conn, data: dict, source: str = "grid") -> tuple[int, int]:
    """Replace-or-add every area and shop in `data`, in one transaction.
    Also fills the grid codes of already indexed sales of these shops, so sales
    that arrived before their shop was registered still count for its town."""
    areas, shops_ = _validate(data, source)
    with transaction(conn):
        villages = grid_store.village_names(conn)
        grid_store.save_areas(conn, areas)
        grid_store.save_shops(conn, shops_)
        sales.fill_grid(conn, shops_)
        if any(villages.get(a["code"]) != a["name"] for a in areas if a["level"] == "village"):
            # terminals show the subject's village by name (quota.terminal_entries)
            registry_store.bump_subjects_rev(conn)
    return len(areas), len(shops_)


def load_file(path: str | Path) -> dict:
    path = Path(path)
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except OSError as err:
        raise GridError(f"cannot read {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise GridError(f"{path}: {err}") from None
