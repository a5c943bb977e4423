"""The grid repository: the areas (district -> town 镇街 -> village 村社) and
the shops in them, as the rules, the cases and the dashboard read them.

Shops carry their town and district codes denormalised next to the village, so
"everything a town inspector may see" is one indexed equality, not a walk up a
tree on every query. What a registry file may say, and its validation, are the
supervision's (gateway/supervision/grid.py); this module only reads and writes
the rows, inside the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shop:
    id: str
    name: str
    village: str | None
    town: str | None
    district: str | None
    designated: bool
    hours: str
    lat: float | None
    lon: float | None

    def in_area(self, level: str, code: str) -> bool:
        return getattr(self, level, None) == code


SHOP_COLUMNS = "id, name, village, town, district, designated, hours, lat, lon"


def _shop(row) -> Shop:
    return Shop(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6] or "", row[7], row[8])


def shop(conn, shop_id: str | None) -> Shop | None:
    if not shop_id:
        return None
    row = conn.execute(f"SELECT {SHOP_COLUMNS} FROM shops WHERE id = ?", [shop_id]).fetchone()
    return _shop(row) if row else None


def shops(conn) -> list[Shop]:
    return [_shop(r) for r in conn.execute(f"SELECT {SHOP_COLUMNS} FROM shops ORDER BY id")]


def area(conn, code: str) -> dict | None:
    row = conn.execute("SELECT code, level, name, parent FROM areas WHERE code = ?", [code]).fetchone()
    return dict(zip(("code", "level", "name", "parent"), row)) if row else None


def area_names(conn) -> dict[str, str]:
    return dict(conn.execute("SELECT code, name FROM areas"))


def village_names(conn) -> dict[str, str]:
    return dict(conn.execute("SELECT code, name FROM areas WHERE level = 'village'"))


def save_areas(conn, areas: list[dict]) -> None:
    """Add or replace areas, {code, level, name, parent} each (parent may be left out)."""
    conn.executemany(
        "INSERT INTO areas(code, level, name, parent) VALUES (:code, :level, :name, :parent) "
        "ON CONFLICT(code) DO UPDATE SET level=excluded.level, name=excluded.name, parent=excluded.parent",
        [{"parent": None, **a} for a in areas])


def save_shops(conn, shops_: list[dict]) -> None:
    """Add or replace shops, {id, name, village, town, district, designated,
    hours, lat, lon, address} each."""
    conn.executemany(
        "INSERT INTO shops(id, name, village, town, district, designated, hours, lat, lon, address) "
        "VALUES (:id, :name, :village, :town, :district, :designated, :hours, :lat, :lon, :address) "
        "ON CONFLICT(id) DO UPDATE SET name=excluded.name, village=excluded.village, town=excluded.town, "
        "district=excluded.district, designated=excluded.designated, hours=excluded.hours, "
        "lat=excluded.lat, lon=excluded.lon, address=excluded.address", shops_)
