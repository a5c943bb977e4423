"""The sales index: one row per stored sale, refusal and void, with the
shop's grid codes and the amounts by kind, written by the rules' follower
(gateway/supervision/rules/engine.py) and read by the rules and the dashboard.

A row carries its shop's village, town and district as they were when it was
indexed; a grid import fills them in for sales that arrived before their shop
was registered (`fill_grid`), so those still count for the shop's town.
"""

from __future__ import annotations

import json


def fill_grid(conn, shops: list[dict]) -> None:
    """Give the indexed sales of these shops, {id, village, town, district}
    each, the shops' grid codes, where they differ."""
    conn.executemany("UPDATE sales SET village=:village, town=:town, district=:district "
                     "WHERE shop=:id AND (town IS DISTINCT FROM :town OR village IS DISTINCT FROM :village)", shops)


def index(conn, *, terminal: str, seq: int, type: str, time: int, received: int, day: str, shop: str | None,
          village: str | None, town: str | None, district: str | None, subject: str | None, card: str | None,
          identity: str | None, mode: str | None, pesticide: int, fertilizer: int, consumption: dict | None,
          subject_group: str | None) -> None:
    """Index one record; a record indexed before stays as it was."""
    conn.execute(
        "INSERT INTO sales(terminal, seq, type, time, received, day, shop, village, town, district, "
        "subject, card, identity, mode, pesticide, fertilizer, consumption, subject_group) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [terminal, seq, type, time, received, day, shop, village, town, district, subject, card, identity, mode,
         pesticide, fertilizer, json.dumps(consumption, sort_keys=True) if consumption else None, subject_group])


def override_counts(conn, shop: str, since: int, until: int) -> tuple[int, int]:
    """(sales, of them with an override instead of an identity check) at a
    shop, after `since` up to `until`."""
    n, o = conn.execute("SELECT count(*), count(*) FILTER (WHERE identity='override') FROM sales "
                        "WHERE shop=? AND type='sale' AND time>? AND time<=?", [shop, since, until]).fetchone()
    return n, o


def last_card_sale_elsewhere(conn, card: str, shop: str | None, until: int) -> tuple | None:
    """(shop, time, terminal, seq) of the card's latest sale up to `until` in
    another shop, if any."""
    return conn.execute("SELECT shop, time, terminal, seq FROM sales WHERE card=? AND type='sale' "
                        "AND shop IS DISTINCT FROM ? AND time<=? ORDER BY time DESC LIMIT 1",
                        [card, shop, until]).fetchone()


def subject_window(conn, subject: str, since: int, until: int) -> list[tuple]:
    """(shop, time, pesticide, fertilizer) of a subject's sales from `since` to `until`."""
    return conn.execute("SELECT shop, time, pesticide, fertilizer FROM sales WHERE subject=? "
                        "AND type='sale' AND time>=? AND time<=?", [subject, since, until]).fetchall()


def group_window(conn, group: str, since: int, until: int) -> list[tuple]:
    """(subject, shop, time, pesticide, fertilizer) of the sales to a
    registry group's subjects from `since` to `until`."""
    return conn.execute("SELECT subject, shop, time, pesticide, fertilizer FROM sales WHERE subject_group=? "
                        "AND type='sale' AND time>=? AND time<=?", [group, since, until]).fetchall()


def consumption_between(conn, first_day: str, last_day: str):
    """(subject, district, shop, consumption as stored: JSON text) of the
    sales and voids of known subjects from `first_day` to `last_day`
    (local dates), as the database hands them over (a month is many rows)."""
    return conn.execute(
        "SELECT subject, district, shop, consumption FROM sales WHERE day >= ? AND day <= ? "
        "AND type IN ('sale', 'void') AND subject IS NOT NULL AND consumption IS NOT NULL",
        [first_day, last_day])
