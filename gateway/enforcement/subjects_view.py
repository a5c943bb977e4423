"""Read-only view of the subjects registry.

The registry itself (`python -m gateway subjects import`, with plots, permits,
allowances and ID numbers) belongs to the quota ledger's work; supervision only
reads it. Until a registry is imported, every read answers "registry unknown",
so the rules that need it (permits, allowances) stay quiet rather than raising
false violations.

A row is its columns with the JSON column (`data`) holding the subject object
as `protocols.policy` reads it merged in.
"""

from __future__ import annotations

import json
import logging

from gateway.store import registry as registry_store
from gateway.store.registry import ID_FIELDS, registry_known

log = logging.getLogger(__name__)

JSON_COLUMNS = ("data", "record", "json", "body", "info")


def lookup(conn, subject_id: str | None) -> dict | None:
    """The subject as a dict, or None (unknown subject, or no registry)."""
    if not subject_id:
        return None
    return lookup_many(conn, [subject_id]).get(subject_id)


def lookup_many(conn, subject_ids) -> dict[str, dict]:
    """{id: subject} for those of `subject_ids` the registry knows, in one
    query (a month's buyers for the ranking are thousands)."""
    wanted = sorted({i for i in subject_ids if i})
    if not wanted or not registry_known(conn):
        return {}
    out = {}
    for row in registry_store.subject_rows(conn, wanted):
        entry = _entry(row)
        entry.setdefault("id", row["id"])
        out[str(row["id"])] = entry
    return out


def _entry(out: dict) -> dict:
    """A registry row as the subject object: a JSON column merged in, JSON
    text fields parsed."""
    for name in JSON_COLUMNS:
        if name in out and isinstance(out[name], str):
            try:
                parsed = json.loads(out[name])
            except ValueError:
                continue
            if isinstance(parsed, dict):
                merged = {k: v for k, v in out.items() if k != name}
                merged.update(parsed)
                out = merged
                break
    for name in ("plots", "permits", "allowances"):
        if isinstance(out.get(name), str):
            try:
                out[name] = json.loads(out[name])
            except ValueError:
                pass
    return out


def group_of(conn, subject_id: str | None) -> str | None:
    """The subject's buying group (household, cooperative) from the registry,
    or None: no subject, no registry, no group, or a value that is not an id
    (an id only, so it is safe to use as a key and to show)."""
    from protocols.schema import is_id

    entry = lookup(conn, subject_id)
    group = entry.get("group") if entry else None
    return group if is_id(group) else None


def mask_id_number(value) -> str:
    """Keep the first 3 and last 2 characters: enough for a clerk to confirm a
    card on the phone, useless for anyone copying it (PIPL data minimisation)."""
    text = str(value or "")
    if len(text) <= 5:
        return "*" * len(text)
    return text[:3] + "*" * (len(text) - 5) + text[-2:]


def mask_phone(value) -> str:
    """138****5678, the way Chinese services show a number: the carrier prefix
    and the last four, never more than half of the digits."""
    text = str(value or "")
    if len(text) < 8:
        return "*" * len(text)
    return text[:3] + "*" * (len(text) - 7) + text[-4:]


# What a supervision user sees of a registry entry is an allowlist per role
# (issue 15, item 10): a field is shown as stored ("show"), masked ("mask"),
# or, when its role does not list it, dropped. A registry import (JSON lines)
# may carry any field its source system had; none reaches a user unless it is
# named here. Full ID numbers go to district users only, when they ask for
# them (`reveal`), and the API writes an audit row for each such read.
SHOW, MASK = "show", "mask"
PHONE_FIELDS = ("phone", "mobile", "tel")
_COMMON = {name: SHOW for name in ("id", "name", "kind", "status", "town", "village", "group", "plots", "permits",
                                   "allowances")}
FIELDS: dict[str, dict[str, str]] = {
    "district": {**_COMMON, **dict.fromkeys(ID_FIELDS, MASK), **dict.fromkeys(PHONE_FIELDS, SHOW), "address": SHOW},
    "town": {**_COMMON, **dict.fromkeys(ID_FIELDS, MASK), **dict.fromkeys(PHONE_FIELDS, MASK)},
    "village": {**_COMMON, **dict.fromkeys(ID_FIELDS, MASK), **dict.fromkeys(PHONE_FIELDS, MASK)},
}
REVEALABLE = {"district": ID_FIELDS}   # masked by default, shown in full on request (audited)
PLOT_FIELDS = ("id", "crop", "area_cmu", "season")
PERMIT_FIELDS = ("id", "ingredients", "from", "until")


def _mask(name: str, value):
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return None   # a structure under a field meant for a number: nothing of it is shown
    return mask_phone(value) if name in PHONE_FIELDS else mask_id_number(value)


def _scalar(value) -> bool:
    return isinstance(value, (str, int, float, bool)) or (
        isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value))


def _items(value, keep: tuple[str, ...]):
    """Plots or permits: their own keys only, each a plain value or a list of
    them (an import could put a whole record under a permit's `id`)."""
    if not isinstance(value, list):
        return None
    return [{k: v for k, v in item.items() if k in keep and _scalar(v)} for item in value if isinstance(item, dict)]


def view(subject: dict | None, role: str, reveal: bool = False) -> tuple[dict | None, list[str]]:
    """The registry entry as a user of `role` may see it, and the names of the
    fields shown in full only because `reveal` asked (to audit). An unknown
    role sees nothing."""
    if subject is None:
        return None, []
    fields = FIELDS.get(role, {})
    revealable = REVEALABLE.get(role, ()) if reveal else ()
    out, revealed = {}, []
    for key, value in subject.items():
        how = fields.get(key)
        if how is None or value is None:
            continue
        if key == "plots":
            value = _items(value, PLOT_FIELDS)
        elif key == "permits":
            value = _items(value, PERMIT_FIELDS)
        elif key == "allowances":
            value = value if isinstance(value, dict) else None
        elif how == MASK and key in revealable and isinstance(value, (str, int)) and not isinstance(value, bool):
            revealed.append(key)
        elif how == MASK:
            value = _mask(key, value)
        elif not isinstance(value, (str, int, float, bool)):
            value = None   # a shown scalar field holding a structure: dropped rather than passed on whole
        if value is not None:
            out[key] = value
    return out, revealed


def public(subject: dict | None) -> dict | None:
    """The entry as the least privileged role sees it (every ID number and
    phone masked, nothing outside the allowlist)."""
    return view(subject, "village")[0]
