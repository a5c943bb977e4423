"""The subject registry and the district's configuration as the gateway holds
them: importing subjects and plots (CSV or JSON lines), the product catalogue,
the policy parameters, and card revocations.

Every import is validated whole before anything is written and then written in
one transaction, so a bad file changes nothing; each bumps the version the
config sync pushes to terminals. ID numbers and other extra fields of a subject
are kept here and never leave the gateway (`quota.public_entry`).

The registry keys (`subjects keys add`): the Ed25519 public keys that sign
subject cards. The gateway checks the card an authorization request shows
(protocols/authz.py `check_proof`) against them and the revocation list; a
gateway that trusts no key refuses every card (`card_unknown`).

Which subjects a terminal may see (`terminal_area`, `serves`, `area_subjects`):
those of its shop's town, or of its shop's village. The `subjects` section
carries exactly those; a subject from elsewhere reaches a terminal only in the
answer to an authorization that showed that subject's card.

A subject may name a `group` (an id): the household or cooperative it buys
with. It is optional and gateway-only: the terminals decide per subject and
never see it; the supervision rules use it to catch one purchase split across
the cards of several members (`split_purchase_group`, docs/supervision.md).
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal, InvalidOperation

from gateway.enforcement import quota
from gateway.store import registry as registry_store
from gateway.store import fleet, transaction
from protocols import card, catalogue, configsync, policy
from protocols.schema import is_id

STATUSES = ("active", "suspended", "revoked")


class RegistryError(ValueError):
    """A file that cannot be imported; the message names the line and the field."""


def _fail(where: str, problem: str):
    raise RegistryError(f"{where}: {problem}")


def _area_cmu(value, where: str) -> int:
    """Hundredths of a mu, exactly: "10.5" mu -> 1050 (no float on the way)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        cmu = Decimal(str(value).strip()) * 100
    except InvalidOperation:
        _fail(where, f"area {value!r} is not a number")
    if cmu != cmu.to_integral_value() or cmu < 0:
        _fail(where, f"area {value!r} must be >= 0 with at most two decimals")
    return int(cmu)


def _plot(raw: dict, where: str) -> dict:
    crop = raw.get("crop")
    if not isinstance(crop, str) or not crop:
        _fail(where, "plot needs a crop")
    if "area_cmu" in raw and raw["area_cmu"] not in (None, ""):
        area = raw["area_cmu"]
        if isinstance(area, str):
            area = _area_cmu(Decimal(area) / 100, where)
        if not isinstance(area, int) or isinstance(area, bool) or area < 0:
            _fail(where, "area_cmu must be an integer >= 0 (hundredths of a mu)")
    elif raw.get("area_mu") not in (None, ""):
        area = _area_cmu(raw["area_mu"], where)
    else:
        _fail(where, "plot needs area_cmu or area_mu")
    plot = {"crop": crop, "area_cmu": area}
    if raw.get("plot") or raw.get("id"):
        plot["id"] = str(raw.get("plot") or raw.get("id"))
    if raw.get("season"):
        plot["season"] = str(raw["season"])
    return plot


def _check_subject(entry: dict, where: str) -> dict:
    if not is_id(entry.get("id")):
        _fail(where, f"subject id {entry.get('id')!r} must be 1-64 of A-Z a-z 0-9 _ - . :")
    entry.setdefault("status", "active")
    if entry["status"] not in STATUSES:
        _fail(where, f"status must be one of {', '.join(STATUSES)}")
    plots = entry.get("plots", [])
    if not isinstance(plots, list):
        _fail(where, "plots must be a list")
    entry["plots"] = [_plot(p, f"{where} plots[{i}]") for i, p in enumerate(plots)]
    for i, permit in enumerate(entry.get("permits") or []):
        if not isinstance(permit, dict) or not isinstance(permit.get("ingredients"), list):
            _fail(f"{where} permits[{i}]", "needs a list of ingredients")
    if entry.get("group") in (None, ""):
        entry.pop("group", None)
    elif not is_id(entry["group"]):
        _fail(where, f"group {entry['group']!r} must be 1-64 of A-Z a-z 0-9 _ - . :")
    allowances = entry.get("allowances") or {}
    if not isinstance(allowances, dict) or any(type(v) is not int for v in allowances.values()):
        _fail(where, "allowances must map category to an integer")
    try:
        from protocols.schema import check
        check(quota.public_entry(entry), configsync.SUBJECT, where)
    except ValueError as err:
        _fail(where, str(err))
    return entry


def parse_subjects(text: str, name: str = "file") -> list[dict]:
    """Subjects with their plots from CSV (one row per plot) or JSON lines."""
    stripped = text.lstrip("\ufeff").lstrip()
    if stripped.startswith("{"):
        return _parse_jsonl(stripped, name)
    return _parse_csv(stripped, name)


def _parse_jsonl(text: str, name: str) -> list[dict]:
    subjects: dict[str, dict] = {}
    plots: list[tuple[str, dict, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            obj = json.loads(line)
        except ValueError as err:
            _fail(where, f"not JSON ({err})")
        if not isinstance(obj, dict):
            _fail(where, "expected an object")
        if "id" in obj:
            obj.setdefault("plots", [])
            subjects[obj["id"]] = obj
            obj["_where"] = where
        elif "subject" in obj:
            plots.append((obj["subject"], obj, where))
        else:
            _fail(where, "a line needs `id` (a subject) or `subject` (a plot)")
    for subject, raw, where in plots:
        if subject not in subjects:
            _fail(where, f"plot of unknown subject {subject!r} (list the subject first)")
        subjects[subject]["plots"].append(raw)
    out = []
    for entry in subjects.values():
        where = entry.pop("_where")
        out.append(_check_subject(entry, where))
    return out


def _parse_csv(text: str, name: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not ({"subject", "id"} & set(reader.fieldnames)):
        _fail(name, "CSV needs a header with a `subject` (or `id`) column")
    subjects: dict[str, dict] = {}
    wheres: dict[str, str] = {}
    for number, row in enumerate(reader, 2):
        where = f"{name}:{number}"
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        sid = row.get("subject") or row.get("id")
        entry = subjects.setdefault(sid, {"id": sid, "plots": []})
        wheres.setdefault(sid, where)
        for field in ("status", "town", "village", "name", "id_number", "group"):
            if row.get(field) and field not in entry:
                entry[field] = row[field]
        if row.get("crop"):
            entry["plots"].append(_plot(row, where))
        if row.get("permit_ingredients"):
            permit = {"ingredients": [x.strip() for x in row["permit_ingredients"].split(";") if x.strip()]}
            if row.get("permit_until"):
                permit["until"] = row["permit_until"]
            if row.get("permit_id"):
                permit["id"] = row["permit_id"]
            entry.setdefault("permits", []).append(permit)
    return [_check_subject(entry, wheres[sid]) for sid, entry in subjects.items()]


def import_subjects(conn, subjects: list[dict], now_ms: int) -> int:
    """Upsert subjects (an entry replaces the stored one); returns the registry revision."""
    with transaction(conn):
        rev = registry_store.bump_subjects_rev(conn)
        registry_store.put_subjects(conn, subjects, rev, now_ms)
    return rev


def set_section(conn, name: str, content, now_ms: int) -> int:
    """Store a new version of a district-wide section; returns its version."""
    configsync.check_section(name, content)
    text = configsync.section_text(content)
    with transaction(conn):
        version = (registry_store.section_version(conn, name) or 0) + 1
        registry_store.put_section(conn, name, version, text, now_ms)
    return version


def load_catalogue(path: str) -> dict:
    try:
        return catalogue.load(path)
    except (OSError, ValueError, catalogue.CatalogueError) as err:
        raise RegistryError(f"{path}: {err}") from None


def load_params(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            params = json.load(f)
        policy.balance({"id": "check", "status": "active"}, {}, params, "2000-01-01")
    except (OSError, ValueError) as err:
        raise RegistryError(f"{path}: {err}") from None
    except policy.PolicyError as err:
        raise RegistryError(f"{path}: {err.detail}") from None
    return params


def revocations(conn) -> list[str]:
    content = registry_store.section_content(conn, configsync.REVOCATIONS)
    return list(content["cards"]) if content is not None else []


# ---------------------------------------------------------------- registry keys



def parse_key(text: str) -> bytes:
    """A registry public key given as 64 hex digits."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise RegistryError(f"registry key {text!r}: expected 64 hex digits (an Ed25519 public key)")
    return raw


def add_keys(conn, keys: list[bytes], now_ms: int) -> int:
    """Trust these registry keys (idempotent); returns how many are trusted."""
    with transaction(conn):
        for key in keys:
            registry_store.add_key(conn, card.key_id(key).hex(), bytes(key).hex(), now_ms)
    return len(registry_store.trusted_keys(conn))


def remove_keys(conn, keys: list[bytes]) -> int:
    """Stop trusting these keys (cards they signed are refused from now on)."""
    with transaction(conn):
        for key in keys:
            registry_store.remove_key(conn, bytes(key).hex())
    return len(registry_store.trusted_keys(conn))


# ---------------------------------------------------------------- who may see whom

def terminal_area(conn, terminal: str) -> dict:
    """{"town", "village"} of the terminal's shop (supervision grid), each
    present when known; empty for a terminal without a shop on record."""
    shop = fleet.terminal_shop(conn, terminal)
    if not shop:
        return {}
    row = registry_store.shop_place(conn, shop)
    out = {}
    if row and row[0]:
        out["town"] = str(row[0])
    if row and row[1]:
        out["village"] = str(row[1])
    return out


def serves(area: dict, entry: dict) -> bool:
    """Whether a shop of `area` (terminal_area) serves the subject of registry
    `entry`: the subject lives in the shop's town, or in its village."""
    if area.get("town") and entry.get("town") == area["town"]:
        return True
    return bool(area.get("village")) and entry.get("village") == area["village"]


def area_subjects(conn, area: dict) -> list[str]:
    """Ids of the subjects a shop of `area` serves (`serves`), sorted."""
    ids = set()
    if area.get("town"):
        ids.update(registry_store.subjects_of_town(conn, area["town"]))
    if area.get("village"):
        ids.update(registry_store.subjects_of_village(conn, area["village"]))
    return sorted(ids)
