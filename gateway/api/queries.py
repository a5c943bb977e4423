"""The API's reads: plain SQL over the store's tables, one function per
question a page asks, each taking a connection and the caller's scope so a
handler stays a few lines and no query forgets the area. Writes go through
the concern that owns them (`gateway.supervision.cases`, `gateway.store.users`)."""

from __future__ import annotations

import json

from gateway.supervision import cases, grid

from gateway.enforcement import subjects_view
from gateway.api import words
from gateway.supervision.rules.config import DEFAULT_SEVERITY
from protocols import catalogue as protocols_catalogue
from gateway.store import dialect
from gateway.store import registry as registry_store
from gateway.store.users import User


def rows(conn, sql: str, args=()) -> list[dict]:
    cur = conn.execute(sql, list(args))
    names = [c[0] for c in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def conditions(filters: dict) -> tuple[str, list]:
    """" AND ..." for {column or condition with ?: value}; a None or empty value is no condition."""
    sql, args = "", []
    for column, value in filters.items():
        if value is None or value == "":
            continue
        sql += f" AND {column}" if "?" in column else f" AND {column} = ?"
        args.append(value)
    return sql, args


def page_sql(limit: int | None, offset: int = 0) -> tuple[str, list]:
    """" LIMIT ? OFFSET ?" for a page, nothing for a whole list (an export)."""
    return (" LIMIT ? OFFSET ?", [limit, offset]) if limit is not None else ("", [])


def by_ids(conn, sql: str, ids: list, chunk: int = 500) -> list[dict]:
    """`sql` with one "{marks}" for an IN list, run over `ids` a chunk at a
    time: an export's whole list would pass SQLite's limit on parameters."""
    found = []
    for i in range(0, len(ids), chunk):
        part = ids[i:i + chunk]
        found += rows(conn, sql.format(marks=", ".join("?" for _ in part)), part)
    return found


def one(conn, sql: str, args=()) -> dict | None:
    found = rows(conn, sql, args)
    return found[0] if found else None


# -- the grid

def area_visible(conn, user: User, code: str) -> bool:
    """Is grid area `code` inside the user's area (itself or below)?"""
    seen = 0
    while code and seen < 4:
        if code == user.area:
            return True
        row = conn.execute("SELECT parent FROM areas WHERE code=?", [code]).fetchone()
        code = row[0] if row else None
        seen += 1
    return False


def area_name(conn, code: str | None) -> str | None:
    if not code:
        return None
    row = conn.execute("SELECT name FROM areas WHERE code=?", [code]).fetchone()
    return row[0] if row else None


def shop(conn, shop_id: str) -> dict | None:
    return one(conn, "SELECT id, name, village, town, district, designated, hours, lat, lon, address FROM shops "
                     "WHERE id=?", [shop_id])


def shop_names(conn) -> dict[str, str]:
    return dict(conn.execute("SELECT id, name FROM shops"))


def shops(conn, user: User, town: str | None) -> list[dict]:
    where, args = user.scope().where()
    sql = f"SELECT id, name, village, town, district, designated, hours FROM shops WHERE {where}"
    if town:
        sql += " AND town = ?"
        args.append(town)
    found = rows(conn, sql + " ORDER BY id", args)
    names = grid.area_names(conn)
    for r in found:
        r["town_name"], r["village_name"] = names.get(r["town"]), names.get(r["village"])
    return found


def terminal(conn, terminal_id: str) -> dict | None:
    return one(conn, "SELECT t.id, t.shop, s.village, s.town, s.district FROM terminals t "
                     "LEFT JOIN shops s ON s.id = t.shop WHERE t.id=?", [terminal_id])


def fleet(conn, user: User, now: int, silent_ms: int, shop_id: str | None = None) -> list[dict]:
    where, args = user.scope().where("s.")
    sql = ("SELECT t.id, t.shop, s.name AS shop_name, s.town, s.village, t.state, t.last_seen, t.acked_upto, "
           "t.head, st.versions, st.skew_ms, st.status_time FROM terminals t LEFT JOIN shops s ON s.id = t.shop "
           f"LEFT JOIN terminal_status st ON st.terminal = t.id WHERE {where}")
    if shop_id:
        sql += " AND t.shop = ?"
        args.append(shop_id)
    found = rows(conn, sql + " ORDER BY t.id", args)
    for r in found:
        r["versions"] = json.loads(r["versions"]) if r["versions"] else {}
        r["backlog"] = max(0, (r["head"] or 0) - (r["acked_upto"] or 0))
        r["silent"] = r["last_seen"] is None or now - r["last_seen"] > silent_ms
    return found


# -- sales and records

def _items(row: dict) -> dict:
    body = json.loads(row.pop("record"))["body"]
    row["items"] = [{"product": i.get("product"), "packs": i.get("packs")} for i in body.get("items", [])
                    if isinstance(i, dict)]
    row["reasons"] = body.get("reasons", [])
    return row


def ledger(conn, shop_id: str, before_time: int | None, limit: int | None, offset: int = 0,
           filters: dict | None = None) -> tuple[list[dict], int]:
    """A page of the shop's ledger (all of it when `limit` is None), newest first, and how many rows it has in all."""
    where, args = " WHERE s.shop = ?", [shop_id]
    if before_time is not None:
        where += " AND s.time < ?"
        args.append(before_time)
    more, more_args = conditions(filters or {})
    where += more
    args += more_args
    total = conn.execute("SELECT count(*) FROM sales s" + where, args).fetchone()[0]
    pg, pg_args = page_sql(limit, offset)
    found = rows(conn, "SELECT s.terminal, s.seq, s.type, s.time, s.subject, s.identity, s.mode, r.record FROM sales s "
                       "JOIN records r ON r.terminal = s.terminal AND r.seq = s.seq" + where +
                 " ORDER BY s.time DESC, s.terminal, s.seq DESC" + pg, args + pg_args)
    return [_items(r) for r in found], total


def purchases(conn, user: User, subject: str, limit: int | None, offset: int = 0,
              filters: dict | None = None) -> tuple[list[dict], int]:
    """A page of the subject's purchases in the caller's area, newest first, and the count of all."""
    where, args = user.scope().where("s.")
    more, more_args = conditions(filters or {})
    where += more
    args += more_args
    total = conn.execute(f"SELECT count(*) FROM sales s WHERE s.subject=? AND {where}", [subject] + args).fetchone()[0]
    pg, pg_args = page_sql(limit, offset)
    found = rows(conn, "SELECT s.terminal, s.seq, s.type, s.time, s.shop, s.identity, s.mode, s.pesticide, s.fertilizer, "
                       f"r.record FROM sales s JOIN records r ON r.terminal = s.terminal AND r.seq = s.seq "
                       f"WHERE s.subject=? AND {where} ORDER BY s.time DESC, s.terminal, s.seq DESC" + pg,
                 [subject] + args + pg_args)
    return [_items(r) for r in found], total


def records(conn, terminal_id: str, before_seq: int | None, limit: int) -> list[dict]:
    sql, args = "SELECT seq, received, record FROM records WHERE terminal=?", [terminal_id]
    if before_seq:
        sql += " AND seq < ?"
        args.append(before_seq)
    found = rows(conn, sql + " ORDER BY seq DESC LIMIT ?", args + [limit])
    for r in found:
        r["record"] = json.loads(r["record"])
    return found


# -- subjects

def subject_visible(conn, user: User, subject: str) -> bool:
    """A subject is the caller's business if it bought, or has a case, in the
    caller's area, or is registered there."""
    where, args = user.scope().where()
    if conn.execute(f"SELECT 1 FROM sales WHERE subject=? AND {where} LIMIT 1", [subject] + args).fetchone():
        return True
    if conn.execute(f"SELECT 1 FROM cases WHERE subject=? AND {where} LIMIT 1", [subject] + args).fetchone():
        return True
    entry = subjects_view.lookup(conn, subject) or {}
    return any(isinstance(home, str) and home and area_visible(conn, user, home)
               for home in (entry.get("town"), entry.get("village")))


def quota_used(conn, subject: str) -> dict:
    balances: dict = {}
    for cat, period, used in conn.execute("SELECT category, period, used FROM quota_used WHERE subject=?", [subject]):
        balances.setdefault(cat, {})[period] = used
    return balances


def subject_cases(conn, user: User, subject: str) -> list[dict]:
    where, args = user.scope().where()
    return rows(conn, f"SELECT id, state, codes, outcome, opened, closed FROM cases WHERE subject=? AND {where} "
                      "ORDER BY id DESC LIMIT 50", [subject] + args)


def subjects_rev(conn) -> int | None:
    """The registry's revision: it moves with every import (quota_meta)."""
    row = conn.execute("SELECT value FROM quota_meta WHERE key = 'subjects_rev'").fetchone()
    return row[0] if row else None


def registry_entries(conn):
    """(town, data) of every registered subject, a row at a time."""
    yield from conn.execute("SELECT town, data FROM subjects")


def areas_within(conn, area: str) -> list[str]:
    """`area` and every grid area below it."""
    children: dict = {}
    for code, parent in conn.execute("SELECT code, parent FROM areas"):
        children.setdefault(parent, []).append(code)
    out, todo = [], [area]
    while todo:
        code = todo.pop()
        out.append(code)
        todo += children.get(code, [])
    return out


def _like_text(text: str) -> str:
    """A LIKE pattern (ESCAPE '\\') for `text` itself anywhere, its % _ and \\ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def shops_named(conn, user: User, text: str, limit: int) -> list[dict]:
    """The caller's shops whose name holds `text`, by id."""
    where, args = user.scope().where()
    return rows(conn, f"SELECT id, name, town, village FROM shops WHERE {where} AND name LIKE ? ESCAPE '\\' "
                      "ORDER BY id LIMIT ?", args + [_like_text(text), limit])


def buyers_by_card(conn, user: User, card: str, limit: int) -> list[str]:
    """Subjects who bought with `card` at the caller's counters."""
    where, args = user.scope().where()
    return [r[0] for r in conn.execute(f"SELECT DISTINCT subject FROM sales WHERE card = ? AND subject IS NOT NULL "
                                       f"AND {where} LIMIT ?", [card] + args + [limit])]


def find_subjects(conn, user: User, kind: str, keys: list[str], limit: int) -> list[tuple[str, dict]]:
    """(id, entry) of registered subjects holding every one of `keys` of
    `kind` (gateway/store/registry.py search_keys) that are the caller's
    business as `subject_visible` decides it (bought or has a case in the
    area, or its town or village is there), by id. Indexes find them: a
    province's registry is never read to answer a search box. District staff
    search from the keys (most subjects are theirs); town and village staff
    from their area's subjects (most holders of a common surname are not)."""
    condition, args = registry_store.keyed(kind, keys)
    sales_where, sales_args = user.scope().where("x.")
    cases_where, cases_args = user.scope().where("c.")
    if user.role == "district":
        home, home_args = registry_store.holds(conn, "place", areas_within(conn, user.area))
        mine = (f"({home} OR EXISTS (SELECT 1 FROM sales x WHERE x.subject = s.id AND {sales_where}) "
                f"OR EXISTS (SELECT 1 FROM cases c WHERE c.subject = s.id AND {cases_where}))")
    else:
        home, home_args = registry_store.holding(conn, "place", areas_within(conn, user.area))
        mine = (f"s.id IN ({home} UNION SELECT x.subject FROM sales x WHERE {sales_where} "
                f"UNION SELECT c.subject FROM cases c WHERE {cases_where})")
    found = conn.execute(f"SELECT s.id, s.data FROM subjects s WHERE {condition} AND {mine} ORDER BY s.id LIMIT ?",
                         args + home_args + sales_args + cases_args + [limit]).fetchall()
    out = []
    for sid, data in found:
        try:
            entry = json.loads(data)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append((sid, entry))
    return out


def towns_quota_used(conn, periods: dict) -> dict:
    """{(town, category): used} in each category's current period ({category:
    period}), every town in one pass over the quota ledger."""
    out: dict = {}
    for town, category, period, used in conn.execute(
            "SELECT s.town, q.category, q.period, sum(q.used) FROM quota_used q JOIN subjects s ON s.id = q.subject "
            f"WHERE q.period IN ({dialect.json_values(conn)}) GROUP BY s.town, q.category, q.period",
            [json.dumps(sorted(set(periods.values())))]):
        if periods.get(category) == period:
            out[(town, category)] = used
    return out


# -- statistics

def overview_counts(conn, user: User, cfg: dict, group: str, day: str) -> list[dict]:
    """Sales, refusals, voids and open cases per `group` (town or village
    column); open cases as the inspection queue counts them, without those
    holding only watch-list findings."""
    where, args = user.scope().where()
    out: dict[str, dict] = {}
    for code, rtype, n in conn.execute(
            f"SELECT {group}, type, count(*) FROM sales WHERE day=? AND {where} GROUP BY {group}, type",
            [day] + args):
        row = out.setdefault(code or "", {"code": code, "sales": 0, "refusals": 0, "voids": 0, "open_cases": 0})
        row[{"sale": "sales", "refusal": "refusals", "void": "voids"}[rtype]] = n
    only, only_args = _not_only_watch(cfg)
    for code, n in conn.execute(
            f"SELECT {group}, count(*) FROM cases WHERE state != 'closed' AND {where} AND {only} GROUP BY {group}",
            args + only_args):
        out.setdefault(code or "", {"code": code, "sales": 0, "refusals": 0, "voids": 0, "open_cases": 0})[
            "open_cases"] = n
    names = grid.area_names(conn)
    groups = sorted(out.values(), key=lambda r: (r["code"] is None, r["code"] or ""))
    for g in groups:
        g["name"] = names.get(g["code"]) if g["code"] else None
    return groups


def day_totals(conn, user: User, day: str) -> dict:
    """Sales, refusals and voids of a local day in the caller's area."""
    where, args = user.scope().where()
    out = {"sales": 0, "refusals": 0, "voids": 0}
    for rtype, n in conn.execute(f"SELECT type, count(*) FROM sales WHERE day=? AND {where} GROUP BY type",
                                 [day] + args):
        out[{"sale": "sales", "refusal": "refusals", "void": "voids"}[rtype]] = n
    return out


def daily(conn, user: User, start_day: str, end_day: str) -> list[dict]:
    where, args = user.scope().where()
    return rows(conn, "SELECT day, count(*) FILTER (WHERE type='sale') AS sales, "
                      "count(*) FILTER (WHERE type='refusal') AS refusals, "
                      "sum(pesticide) AS pesticide, sum(fertilizer) AS fertilizer FROM sales "
                      f"WHERE day >= ? AND day <= ? AND {where} GROUP BY day ORDER BY day",
                [start_day, end_day] + args)


# -- violations and cases

def violations(conn, user: User, filters: dict, before_id: int | None, limit: int | None) -> list[dict]:
    """Findings filed to cases one by one, newest first (all of them when `limit` is None)."""
    where, args = user.scope().where("c.")
    sql = ("SELECT v.id, v.time, v.code, v.subject, v.shop, v.terminal, v.seq, v.detail, cv.case_id, "
           "c.town, c.village FROM violations v JOIN case_violations cv ON cv.violation = v.id "
           f"JOIN cases c ON c.id = cv.case_id WHERE {where}")
    more, more_args = conditions({**filters, "v.id < ?": before_id})
    pg, pg_args = page_sql(limit)
    found = rows(conn, sql + more + " ORDER BY v.id DESC" + pg, args + more_args + pg_args)
    for r in found:
        r["detail"] = json.loads(r["detail"])
    return found


def _case_filters(user: User, state: str | None, filters: dict, code: str | None) -> tuple[str, list]:
    """The caller's cases in `state` ("active": not closed) under the list
    filters and holding a finding of `code`: a WHERE condition."""
    where, args = user.scope().where()
    if state == "active":
        where += " AND state IN ('open', 'assigned', 'inspected')"
    elif state:
        where += " AND state = ?"
        args.append(state)
    more, more_args = conditions(filters)
    where += more
    args += more_args
    if code:
        where += " AND (',' || codes || ',') LIKE ?"
        args.append(f"%,{code},%")
    return where, args


def case_list(conn, user: User, now: int, state: str | None, filters: dict, code: str | None,
              before_id: int | None, limit: int | None) -> list[dict]:
    where, args = _case_filters(user, state, {**filters, "id < ?": before_id}, code)
    pg, pg_args = page_sql(limit)
    found = rows(conn, f"SELECT {', '.join(cases.CASE_COLUMNS)} FROM cases WHERE {where} ORDER BY id DESC" + pg,
                 args + pg_args)
    return name_cases(conn, found, now)


def name_cases(conn, found: list[dict], now: int) -> list[dict]:
    if not found:
        return found
    names, shop_name, people = grid.area_names(conn), shop_names(conn), user_names(conn)
    subject = subject_names(conn, [r["subject"] for r in found])
    for r in found:
        r["town_name"] = names.get(r["town"])
        r["village_name"] = names.get(r["village"])
        r["shop_name"] = shop_name.get(r["shop"])
        r["subject_name"] = subject.get(r["subject"])
        r["assignee_name"] = people.get(r["assignee"])
        r["overdue"] = r["state"] in ("open", "assigned") and (r["deadline"] or 0) < now
    return found


# -- names for ids (issue 18, item 7)

def user_names(conn) -> dict[str, str]:
    """{login: the name the dashboard shows}: the display name, else the login."""
    return {name: display or name for name, display in conn.execute("SELECT name, display_name FROM users")}


def subject_names(conn, ids) -> dict[str, str]:
    """{id: masked name} for the subjects of a list (words.subject_name)."""
    found = subjects_view.lookup_many(conn, [i for i in ids if i])
    return {sid: name for sid, entry in found.items() if (name := words.subject_name(entry))}


def catalogue(conn) -> tuple[int | None, dict]:
    """The catalogue the terminals run (its version, the data), or the shipped
    sample before one was imported, as the rules read it."""
    row = conn.execute("SELECT version, content FROM config_sections WHERE name='catalogue'").fetchone()
    if row is not None:
        try:
            data = json.loads(row[1])
            if isinstance(data, dict):
                return row[0], data
        except ValueError:
            pass
    return None, protocols_catalogue.load()


def catalogue_version(conn) -> int | None:
    row = conn.execute("SELECT version FROM config_sections WHERE name='catalogue'").fetchone()
    return row[0] if row else None


def case_violations(conn, case_id: int) -> list[dict]:
    found = rows(conn, "SELECT v.id, v.time, v.code, v.subject, v.shop, v.terminal, v.seq, v.detail "
                       "FROM case_violations cv JOIN violations v ON v.id = cv.violation WHERE cv.case_id=? "
                       "ORDER BY v.id", [case_id])
    for v in found:
        v["detail"] = json.loads(v["detail"])
    return found


def case_photos(conn, case_id: int) -> list[dict]:
    return rows(conn, "SELECT id, time, actor, mime, size, sha256 FROM case_photos WHERE case_id=? ORDER BY id",
                [case_id])


def case_photo(conn, case_id: int, photo_id: int) -> dict | None:
    return one(conn, "SELECT path, mime FROM case_photos WHERE id=? AND case_id=?", [photo_id, case_id])


def assignees(conn, case: dict) -> list[str]:
    """Enabled users whose area covers the case: the ones it may be assigned to."""
    return [r["name"] for r in rows(conn, "SELECT name, role, area FROM users WHERE disabled=0 ORDER BY name")
            if User(0, r["name"], r["role"], r["area"]).scope().covers(case)]


def open_shop_cases(conn, shop_id: str) -> list[dict]:
    found = rows(conn, "SELECT id, state, subject, codes, level, assignee, opened FROM cases "
                       "WHERE shop=? AND state != 'closed' ORDER BY id DESC LIMIT 50", [shop_id])
    subject, people = subject_names(conn, [r["subject"] for r in found]), user_names(conn)
    for r in found:
        r["subject_name"], r["assignee_name"] = subject.get(r["subject"]), people.get(r["assignee"])
    return found


# -- upstream, audit, live versions

def upstream(conn) -> dict:
    state = one(conn, "SELECT last_attempt, last_success, last_error, failures, next_attempt, sent_upto "
                      "FROM upstream_state WHERE id=1") or {}
    pending = conn.execute("SELECT count(*), min(created) FROM outbox WHERE sent IS NULL").fetchone()
    return {**state, "pending": pending[0], "oldest_pending": pending[1],
            "sent": conn.execute("SELECT count(*) FROM outbox WHERE sent IS NOT NULL").fetchone()[0]}


def audit_entries(conn, target: str | None, limit: int) -> list[dict]:
    sql, args = 'SELECT id, time, "user", role, area, action, target, detail FROM audit_log', []
    if target:
        sql += " WHERE target=?"
        args.append(target)
    return rows(conn, sql + " ORDER BY id DESC LIMIT ?", args + [limit])


def version(conn, user: User, day: str, cfg_watch=()) -> dict:
    """What the caller's stream compares, tick by tick, from the caller's
    area only, never a district-wide id (whose jumps would tell a village
    user how busy the rest of the district is); the upstream queue for
    district users only. Opaque values: only their changes mean anything.
    Cases: every case change moves the case's `updated`, so the count,
    the latest and the sum of `updated` change with it, from one scan of
    the area's cases (counting their events instead cost ten times as
    much for a district); violations: each one filed adds to its case's
    count."""
    where, args = user.scope().where()
    swhere, sargs = user.scope().where("s.")
    n, latest, total, filed = conn.execute(
        "SELECT count(*), coalesce(max(updated), 0), coalesce(sum(updated), 0), coalesce(sum(violations), 0) "
        f"FROM cases WHERE {where}", args).fetchone()
    out = {
        "cases": f"{n}:{latest}:{total}",
        "violations": filed,
        "fleet": conn.execute("SELECT count(*) FILTER (WHERE t.state='online') || ':' || coalesce(max(t.last_seen), 0) "
                              f"FROM terminals t LEFT JOIN shops s ON s.id = t.shop WHERE {swhere}",
                              sargs).fetchone()[0],
        "sales": conn.execute(f"SELECT count(*) FROM sales WHERE day=? AND {where}", [day] + args).fetchone()[0],
    }
    # watch-list findings open no case: counted from their shop's area, so the watch list refreshes too
    watch = cfg_watch or ()
    if watch:
        out["watch"] = conn.execute(
            "SELECT count(*) FROM violations v LEFT JOIN terminals t ON t.id = v.terminal "
            f"LEFT JOIN shops s ON s.id = coalesce(v.shop, t.shop) WHERE {swhere} "
            f"AND v.code IN ({', '.join('?' for _ in watch)})", sargs + list(watch)).fetchone()[0]
    if user.role == "district":
        out["upstream"] = conn.execute("SELECT count(*) FROM outbox WHERE sent IS NULL").fetchone()[0]
    return out


# -- the inspection queue and the watch list (issue 18, item 6)

def _severity_of_code(cfg: dict, column: str) -> str:
    """SQL for the rules' severity of a one-code column, written inline: it
    sits in a GROUP BY's select list, and the codes and levels were checked
    against the known codes and 1..4 when the rules file was loaded
    (gateway/supervision/rules/config.py)."""
    levels = cfg["severity"]
    whens = " ".join(f"WHEN '{code}' THEN {int(level)}" for code, level in sorted(levels.items())
                     if code.replace("_", "").isalnum())
    return f"CASE {column} {whens} ELSE {DEFAULT_SEVERITY} END" if whens else str(DEFAULT_SEVERITY)


def _severity_of_codes(cfg: dict) -> tuple[str, list]:
    """SQL for a case's severity: the most severe of its comma-joined codes."""
    by_level = sorted(cfg["severity"].items(), key=lambda kv: (kv[1], kv[0]))
    if not by_level:
        return str(DEFAULT_SEVERITY), []
    whens = " ".join(f"WHEN (',' || codes || ',') LIKE ? THEN {int(level)}" for _, level in by_level)
    return f"CASE {whens} ELSE {DEFAULT_SEVERITY} END", [f"%,{code},%" for code, _ in by_level]


def _not_only_watch(cfg: dict) -> tuple[str, list]:
    """SQL true for a case with a code outside the watch list: each watch code
    is cut out of ',codes,' (a case holds each code once), and something must
    be left."""
    watch = cfg["queue"]["watch"]
    expr = "(',' || codes || ',')"
    for _ in watch:
        expr = f"replace({expr}, ?, ',')"
    return f"{expr} <> ','", [f",{code}," for code in watch]


def queue(conn, user: User, cfg: dict, now: int, state: str | None, filters: dict, code: str | None,
          page: int, per_page: int | None) -> dict:
    """Cases to inspect, most severe first, then the nearest deadline; cases
    holding only watch-list findings are left to the watch list. `per_page`
    None: all of them."""
    sev, sev_args = _severity_of_codes(cfg)
    where, args = _case_filters(user, state, filters, code)
    only, only_args = _not_only_watch(cfg)
    sql = f" FROM cases WHERE {where} AND {only}"
    args += only_args
    total = conn.execute("SELECT count(*)" + sql, args).fetchone()[0]
    pg, pg_args = page_sql(per_page, (page - 1) * (per_page or 0))
    found = rows(conn, f"SELECT {', '.join(cases.CASE_COLUMNS)}, {sev} AS severity" + sql +
                 " ORDER BY severity, deadline IS NULL, deadline, id" + pg, sev_args + args + pg_args)
    return {"cases": name_cases(conn, found, now), "total": total, "page": page, "per_page": per_page}


def violation_groups(conn, user: User, cfg: dict, watch: bool, filters: dict, page: int,
                     per_page: int | None) -> dict:
    """Findings of one kind from one terminal (and one subject) as one row with
    a count and the first and last time, most severe first, then the latest:
    a terminal whose clock drifts all season is one row, not the whole page.
    `watch`: the watch list's codes instead of the queue's."""
    codes = cfg["queue"]["watch"]
    if watch:
        # watch-list findings open no case (cases.file_new_violations): their area is their shop's
        # (the terminal's shop for fleet health); those filed before that still show their case
        where, args = user.scope().where("s.")
        moved = {"c.town": "s.town", "c.village": "s.village", "v.shop": "s.id"}
        filters = {moved.get(k, k): v for k, v in filters.items()}
        joins = ("FROM violations v LEFT JOIN terminals t ON t.id = v.terminal "
                 "LEFT JOIN shops s ON s.id = coalesce(v.shop, t.shop)")
    else:
        where, args = user.scope().where("c.")
        joins = "FROM violations v JOIN case_violations cv ON cv.violation = v.id JOIN cases c ON c.id = cv.case_id"
    if codes:
        marks = ", ".join("?" for _ in codes)
        where += f" AND v.code {'' if watch else 'NOT '}IN ({marks})"
        args += list(codes)
    elif watch:
        where += " AND 1 = 0"
    more, more_args = conditions(filters)
    where += more
    args += more_args
    body = f"{joins} WHERE {where} GROUP BY v.code, v.terminal, v.subject"
    total = conn.execute(f"SELECT count(*) FROM (SELECT 1 {body}) g", args).fetchone()[0]
    pg, pg_args = page_sql(per_page, (page - 1) * (per_page or 0))
    found = rows(conn, f"SELECT v.code, v.terminal, v.subject, count(*) AS n, min(v.time) AS first_time, "
                       f"max(v.time) AS last_time, max(v.id) AS latest, {_severity_of_code(cfg, 'v.code')} AS severity "
                       f"{body} ORDER BY severity, last_time DESC, latest DESC" + pg, args + pg_args)
    if found:
        latest = {r["id"]: r for r in by_ids(
            conn, "SELECT v.id, v.seq, v.shop, v.detail, cv.case_id FROM violations v "
                  "LEFT JOIN case_violations cv ON cv.violation = v.id WHERE v.id IN ({marks})",
            [r["latest"] for r in found])}
        shop_name = shop_names(conn)
        terminal_shop = dict(conn.execute("SELECT id, shop FROM terminals"))   # fleet health names a terminal only
        for r in found:
            last = latest[r["latest"]]
            shop_id = last["shop"] or terminal_shop.get(r["terminal"])
            r.update(seq=last["seq"], shop=shop_id, shop_name=shop_name.get(shop_id),
                     case_id=last["case_id"], detail=json.loads(last["detail"]))
    return {"groups": found, "total": total, "page": page, "per_page": per_page}


# -- the map and the trends (issue 18, item 9)

def map_shops(conn, user: User, cfg: dict) -> list[dict]:
    """Every shop in the area with its coordinates (None before the grid file
    gave them) and its open cases as the queue counts them (not those holding
    only watch-list findings), with the worst severity among them."""
    where, args = user.scope().where()
    found = rows(conn, f"SELECT id, name, town, village, lat, lon FROM shops WHERE {where} ORDER BY id", args)
    sev, sev_args = _severity_of_codes(cfg)
    only, only_args = _not_only_watch(cfg)
    counts = {shop: (n, worst) for shop, n, worst in conn.execute(
        f"SELECT shop, count(*), min({sev}) FROM cases WHERE state != 'closed' AND {where} AND {only} "
        "GROUP BY shop", sev_args + args + only_args)}
    names = grid.area_names(conn)
    for r in found:
        r["open_cases"], r["severity"] = counts.get(r["id"], (0, None))
        r["town_name"], r["village_name"] = names.get(r["town"]), names.get(r["village"])
    return found


def sales_since(conn, user: User, group: str, first_day: str) -> list[tuple]:
    """(day, group, type, fertilizer, consumption JSON, record JSON or None) of
    every sale, refusal and void in the area from `first_day`; the record only
    for a pesticide sale that carries no consumption, whose g and mL must be
    read from its items."""
    where, args = user.scope().where("s.")
    return conn.execute(
        f"SELECT s.day, s.{group}, s.type, s.fertilizer, s.consumption, "
        "CASE WHEN s.consumption IS NULL AND s.pesticide > 0 THEN r.record END FROM sales s "
        "LEFT JOIN records r ON r.terminal = s.terminal AND r.seq = s.seq "
        f"WHERE s.day >= ? AND {where}", [first_day] + args).fetchall()


def violations_since(conn, user: User, cfg: dict, group: str, start_ms: int) -> list[tuple]:
    """(time, group) of each finding for inspectors (not the watch list) in
    the area from `start_ms`."""
    where, args = user.scope().where("c.")
    watch = cfg["queue"]["watch"]
    if watch:
        where += f" AND v.code NOT IN ({', '.join('?' for _ in watch)})"
        args += list(watch)
    column = "v.shop" if group == "shop" else f"c.{group}"
    return conn.execute(f"SELECT v.time, {column} FROM violations v JOIN case_violations cv ON cv.violation = v.id "
                        f"JOIN cases c ON c.id = cv.case_id WHERE v.time >= ? AND {where}",
                        [start_ms] + args).fetchall()
