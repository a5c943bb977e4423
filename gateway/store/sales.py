"""The sales index: one row per stored sale, refusal and void, with the
shop's grid codes and the amounts by kind, written by the rules' follower
(gateway/supervision/rules/engine.py) and read by the rules and the dashboard.

A row carries its shop's village, town and district as they were when it was
indexed; a grid import fills them in for sales that arrived before their shop
was registered (`fill_grid`), so those still count for the shop's town.
"""

from __future__ import annotations


def fill_grid(conn, shops: list[dict]) -> None:
    """Give the indexed sales of these shops, {id, village, town, district}
    each, the shops' grid codes, where they differ."""
    conn.executemany("UPDATE sales SET village=:village, town=:town, district=:district "
                     "WHERE shop=:id AND (town IS DISTINCT FROM :town OR village IS DISTINCT FROM :village)", shops)
