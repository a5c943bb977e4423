"""The quota policy: one pure decision for a sale, run by the gateway and the terminal.

The gateway runs `decide` against its authoritative balances online; a terminal
that gets no answer in time runs the very same function against its cached
balances with mode "offline". Same inputs, same output, on CPython and on
MicroPython: so the function reads no clock (the date is an input), draws no
random numbers, iterates dicts only in sorted order (MicroPython dicts keep no
insertion order) and counts in integers only (the canonical encoding has no
floats). Input and output shapes are in docs/policy.md; the shared vectors in
protocols/vectors/policy.json pin the behaviour down.

Units, chosen so realistic values stay below 2**30 (MicroPython small ints, no
heap allocation on a 32-bit MCU): fertilizer categories in g of pure nutrient
(a 500 mu cooperative at 20 kg N/mu is 10**7 g), product categories in g or mL of
product, active-ingredient categories in mg. Plot areas are in hundredths of a mu.
Consumption is rounded up per cart line (a sale never counts less than it holds)
and allowances are rounded down (never more than the norm gives).
"""

from protocols import catalogue as _catalogue
from protocols.reasons import ReasonError, register

POLICY_VERSION = 1

APPROVE = "approve"
PARTIAL = "partial"
REFUSE = "refuse"

IDENTITIES = {"card": ("card",), "face": ("face",), "card+face": ("card", "face"), "override": ()}

REASONS = register({
    "subject_suspended": ("该主体资格已暂停，不能购买", "The subject is suspended: no sales"),
    "subject_revoked": ("该主体资格已注销，不能购买", "The subject is revoked: no sales"),
    "identity_missing": ("未核验身份：请刷主体信息卡或刷脸", "Identity not checked: tap the subject card or look at the camera"),
    "override_not_allowed": ("本地不允许店员代为确认身份：请刷卡或刷脸", "Clerk override is not allowed here: tap the card or use the camera"),
    "cart_empty": ("购物清单为空", "The cart is empty"),
    "quantity_invalid": ("数量不对：件数须为正整数", "Invalid quantity: packs must be a whole number above zero"),
    "product_banned": ("禁用农药，禁止销售", "Banned pesticide: it must not be sold"),
    "restricted_shop_not_designated": ("限制使用农药只能在定点经营门店购买，本店不是定点店", "Restricted-use pesticide: sold only at designated shops, and this shop is not one"),
    "restricted_no_permit": ("该主体没有此限制使用农药的使用许可", "Restricted-use pesticide: the subject holds no permit for it"),
    "restricted_permit_expired": ("该主体的限制使用农药许可已过期", "Restricted-use pesticide: the subject's permit has expired"),
    "card_required": ("限制使用农药须刷主体信息卡", "Restricted-use pesticide: the subject card must be tapped"),
    "face_required": ("限制使用农药须同时刷脸核验", "Restricted-use pesticide: a face check is also required"),
    "offline_restricted_online_only": ("网络中断：限制使用农药只能联网销售", "Offline: restricted-use pesticides are sold online only"),
    "quota_not_set": ("该主体在此类别没有定额（未登记地块或未核定）", "The subject has no allowance in this category (no plots or norm on record)"),
    "quota_exceeded": ("超出剩余定额：请减少数量", "Over the remaining quota: reduce the quantity"),
    "offline_fraction_exceeded": ("网络中断：离线只能使用剩余定额的一部分，请减少数量", "Offline: only part of the remaining quota may be used; reduce the quantity"),
    "offline_cap_exceeded": ("网络中断：超过离线单笔上限，请减少数量", "Offline: over the per-sale offline cap; reduce the quantity"),
    "policy_input_invalid": ("决策输入不完整或格式错误", "The decision input is incomplete or malformed"),
})

# What the clerk can do about each code. The item's `action` is the first in
# ACTION_ORDER among its reasons: an item that can never be sold is removed,
# whatever else could be fixed about it.
ACTIONS = {
    "subject_suspended": "refuse_sale",
    "subject_revoked": "refuse_sale",
    "identity_missing": "identify",
    "override_not_allowed": "identify",
    "cart_empty": "add_items",
    "quantity_invalid": "fix_quantity",
    "unknown_product": "rescan",
    "product_banned": "remove_item",
    "restricted_shop_not_designated": "refer_designated_shop",
    "restricted_no_permit": "remove_item",
    "restricted_permit_expired": "remove_item",
    "card_required": "ask_card",
    "face_required": "ask_face",
    "offline_restricted_online_only": "retry_online",
    "quota_not_set": "remove_item",
    "quota_exceeded": "reduce_quantity",
    "offline_fraction_exceeded": "reduce_quantity",
    "offline_cap_exceeded": "reduce_quantity",
    "policy_input_invalid": "refuse_sale",
}
ACTION_ORDER = (
    "refuse_sale", "add_items", "remove_item", "refer_designated_shop", "rescan",
    "fix_quantity", "identify", "ask_card", "ask_face", "retry_online", "reduce_quantity",
)
_QUANTITY_CODES = ("quota_exceeded", "offline_fraction_exceeded", "offline_cap_exceeded")


class PolicyError(ReasonError):
    """Inputs the policy cannot decide on; the detail names the field."""


def action(code):
    """The machine-readable thing the clerk can do about a reason code."""
    return ACTIONS.get(code, "refuse_sale")


def _bad(path, problem):
    raise PolicyError("policy_input_invalid", "%s: %s" % (path, problem))


def _is_date(value):
    return (isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-"
            and (value[0:4] + value[5:7] + value[8:10]).isdigit())


def _need(obj, key, kind, path):
    if not isinstance(obj, dict):
        _bad(path, "expected object")
    value = obj.get(key)
    if kind is int:
        ok = type(value) is int
    else:
        ok = isinstance(value, kind)
    if not ok:
        _bad(path + "." + key, "missing or of the wrong type")
    return value


def _check_params(params):
    categories = _need(params, "categories", dict, "params")
    for cid in categories:
        cat = categories[cid]
        where = "params.categories." + cid
        basis = _need(cat, "basis", str, where)
        if basis == "nutrient":
            _need(cat, "nutrients", list, where)
        elif basis == "ingredient":
            _need(cat, "ingredients", list, where)
        elif basis == "product":
            _need(cat, "kinds", list, where)
        else:
            _bad(where + ".basis", "expected nutrient, ingredient or product")
        if not isinstance(cat.get("enforce", True), bool):
            _bad(where + ".enforce", "expected true or false")
        if cat.get("period", "year") == "season":
            seasons = _need(params, "seasons", list, "params")
            if not seasons:
                _bad("params.seasons", "a seasonal category needs at least one season")
        elif cat.get("period", "year") != "year":
            _bad(where + ".period", "expected year or season")
    # A misspelt switch must fail loudly, never quietly drop a check (fail closed).
    if params.get("restricted_identity", "card+face") not in ("card", "face", "card+face"):
        _bad("params.restricted_identity", "expected card, face or card+face")
    if "override_allowed" in params and not isinstance(params["override_allowed"], bool):
        _bad("params.override_allowed", "expected true or false")
    norms = params.get("norms") or {}
    if not isinstance(norms, dict):
        _bad("params.norms", "expected {crop: {category: per mu}}")
    for crop in norms:
        per_crop = norms[crop]
        if not isinstance(per_crop, dict):
            _bad("params.norms." + crop, "expected {category: per mu}")
        for cid in per_crop:
            if type(per_crop[cid]) is not int or per_crop[cid] < 0:
                _bad("params.norms.%s.%s" % (crop, cid), "expected an integer >= 0 (category units per mu)")
    offline = params.get("offline")
    if offline is not None:
        if not isinstance(offline, dict):
            _bad("params.offline", "expected object")
        if "restricted" in offline and not isinstance(offline["restricted"], bool):
            _bad("params.offline.restricted", "expected true or false")
        caps = offline.get("cap") or {}
        if not isinstance(caps, dict):
            _bad("params.offline.cap", "expected object")
        for cid in caps:
            if type(caps[cid]) is not int or caps[cid] < 0:
                _bad("params.offline.cap." + cid, "expected an integer >= 0")
    last = ""
    for i, season in enumerate(params.get("seasons") or []):
        start = season.get("start") if isinstance(season, dict) else None
        if not (isinstance(start, str) and len(start) == 5 and start[2] == "-" and start > last):
            _bad("params.seasons[%d].start" % i, "expected MM-DD, after the previous season's")
        if not isinstance(season.get("id"), str):
            _bad("params.seasons[%d].id" % i, "expected a string")
        last = start


def period_of(params, category, date):
    """The balance period a date falls in for a category: "2025" or "2025-<season>".

    Seasons are given by start day (MM-DD) in calendar order; a date before the
    first start belongs to the last season of the previous year, so a winter
    season from 10-15 to 03-01 is one period across New Year.
    """
    if params["categories"][category].get("period", "year") == "year":
        return date[0:4]
    seasons = params["seasons"]
    day = date[5:10]
    chosen = None
    for season in seasons:
        if season["start"] <= day:
            chosen = season
    year = int(date[0:4])
    if chosen is None:
        chosen = seasons[-1]
        year -= 1
    return "%d-%s" % (year, chosen["id"])


def _season_of(period):
    cut = period.find("-")
    return period[cut + 1:] if cut >= 0 else None


def allowance(subject, params, category, period):
    """The subject's allowance for a category in a period.

    Set explicitly by the district (subject.allowances) or else the sum over its
    plots of area x per-crop norm. A plot tagged with a season counts only in
    that season's periods of seasonal categories (a rice plot sown as late rice),
    and in every yearly period, where double cropping rightly adds both norms.
    """
    explicit = subject.get("allowances")
    if explicit and category in explicit:
        return explicit[category]
    norms = params.get("norms", {})
    season = _season_of(period)
    total = 0
    for plot in subject.get("plots", []):
        plot_season = plot.get("season")
        if season is not None and plot_season is not None and plot_season != season:
            continue
        per_mu = norms.get(plot.get("crop"), {}).get(category, 0)
        total += plot.get("area_cmu", 0) * per_mu
    return total // 100


def _used(balances, category, period):
    per_cat = balances.get(category)
    if not per_cat:
        return 0
    return per_cat.get(period, 0)


def balance(subject, balances, params, date):
    """Allowance, used and remaining per category on a date (for balance reports)."""
    _check_params(params)
    out = {}
    categories = params["categories"]
    for cid in sorted(categories):
        period = period_of(params, cid, date)
        granted = allowance(subject, params, cid, period)
        used = _used(balances, cid, period)
        out[cid] = {
            "period": period,
            "allowance": granted,
            "used": used,
            "remaining": granted - used,
            "enforced": categories[cid].get("enforce", True),
        }
    return out


def per_pack(cat, prod, pack):
    """(numerator, denominator): one pack holds numerator/denominator category units.

    Kept as a fraction so a line of n packs is rounded once, not n times, and the
    largest n that fits a limit can be found exactly: ceil(n*a/d) <= L iff n*a <= L*d.
    """
    basis = cat["basis"]
    if basis == "nutrient":
        contents = prod.get("nutrients")
        names = cat["nutrients"]
        den = 1000000  # g per pack = net (g or mL) x mg/kg (or mg/L) / 10**6
    elif basis == "ingredient":
        contents = prod.get("ingredients")
        names = cat["ingredients"]
        den = 1000  # mg per pack = net x mg/kg / 10**3
    else:
        if prod["kind"] not in cat["kinds"]:
            return 0, 1
        unit = cat.get("unit")
        if unit is not None and pack["unit"] != unit:
            return 0, 1
        return pack["net"], 1
    if not contents:
        return 0, 1
    content = 0
    for name in names:
        content += contents.get(name, 0)
    return pack["net"] * content, den


def _ceil_div(a, b):
    return -(-a // b)


def _permit_reason(subject, needed, date):
    """None when some permit covers every restricted ingredient and is valid on date."""
    expired = False
    for permit in subject.get("permits", []):
        scope = permit.get("ingredients", [])
        covers = True
        if "*" not in scope:
            for name in needed:
                if name not in scope:
                    covers = False
                    break
        if not covers:
            continue
        until = permit.get("until")
        if until is not None and until < date:
            expired = True
            continue
        return None
    return "restricted_permit_expired" if expired else "restricted_no_permit"


def _static_reasons(ctx, prod, state):
    """Reasons that hold for the product whatever the quantity."""
    if state["status"] == _catalogue.BANNED:
        return ["product_banned"]
    if state["status"] != _catalogue.RESTRICTED:
        return []
    reasons = []
    if ctx["offline"] and not ctx["offline_params"].get("restricted", False):
        reasons.append("offline_restricted_online_only")
    if state["designated"] and not ctx["shop"].get("designated", False):
        reasons.append("restricted_shop_not_designated")
    permit = _permit_reason(ctx["subject"], state["restricted"], ctx["date"])
    if permit is not None:
        reasons.append(permit)
    required = ctx["params"].get("restricted_identity", "card+face")
    have = IDENTITIES[ctx["identity"]]
    if required in ("card", "card+face") and "card" not in have:
        reasons.append("card_required")
    if required in ("face", "card+face") and "face" not in have:
        reasons.append("face_required")
    return reasons


def _fit(num, den, limit):
    """Largest n with ceil(n*num/den) <= limit; num > 0."""
    if limit <= 0:
        return 0
    return limit * den // num


def _quantity_reasons(ctx, prod, pack, packs):
    """Consumption of the line and the reasons it does not fit, with max packs."""
    consumption = {}
    reasons = []
    max_packs = packs
    for cid in ctx["category_ids"]:
        num, den = per_pack(ctx["categories"][cid], prod, pack)
        if num == 0:
            continue
        need = _ceil_div(packs * num, den)
        consumption[cid] = need
        limits = []
        if ctx["enforced"][cid]:
            if ctx["allowance"][cid] <= 0:
                limits.append(("quota_not_set", 0))
            else:
                limits.append(("quota_exceeded", ctx["remaining"][cid]))
            if ctx["offline"]:
                share = ctx["start_remaining"][cid] * ctx["fraction_pct"] // 100
                limits.append(("offline_fraction_exceeded", share - ctx["taken"].get(cid, 0)))
        if ctx["offline"] and cid in ctx["caps"]:
            limits.append(("offline_cap_exceeded", ctx["caps"][cid] - ctx["taken"].get(cid, 0)))
        for code, limit in limits:
            if need > limit:
                if code not in reasons:
                    reasons.append(code)
            fit = _fit(num, den, limit)
            if fit < max_packs:
                max_packs = fit
    if "quota_exceeded" in reasons or "quota_not_set" in reasons:
        # Offline codes mean "online this would pass"; when the quota itself is
        # short that would mislead the clerk into waiting for the network.
        reasons = [code for code in reasons if not code.startswith("offline_")]
    return consumption, reasons, max_packs


def _check_subject(subject):
    for i, plot in enumerate(subject.get("plots") or []):
        where = "subject.plots[%d]" % i
        area = _need(plot, "area_cmu", int, where)
        if area < 0:
            _bad(where + ".area_cmu", "expected hundredths of a mu >= 0")
        _need(plot, "crop", str, where)
    explicit = subject.get("allowances") or {}
    if not isinstance(explicit, dict):
        _bad("subject.allowances", "expected object")
    for cid in explicit:
        if type(explicit[cid]) is not int:
            _bad("subject.allowances." + cid, "expected integer")
    for i, permit in enumerate(subject.get("permits") or []):
        _need(permit, "ingredients", list, "subject.permits[%d]" % i)
        if permit.get("until") is not None and not _is_date(permit["until"]):
            _bad("subject.permits[%d].until" % i, "expected YYYY-MM-DD")


def _check_balances(balances):
    if not isinstance(balances, dict):
        _bad("inputs.balances", "expected object")
    for cid in balances:
        periods = balances[cid]
        if not isinstance(periods, dict):
            _bad("balances." + cid, "expected {period: used}")
        for period in periods:
            if type(periods[period]) is not int:
                _bad("balances.%s.%s" % (cid, period), "expected integer")


def _context(inputs):
    params = _need(inputs, "params", dict, "inputs")
    _check_params(params)
    subject = _need(inputs, "subject", dict, "inputs")
    status = _need(subject, "status", str, "subject")
    if status not in ("active", "suspended", "revoked"):
        _bad("subject.status", "expected active, suspended or revoked")
    date = inputs.get("date")
    if not _is_date(date):
        _bad("inputs.date", "expected YYYY-MM-DD")
    mode = inputs.get("mode")
    if mode not in ("online", "offline"):
        _bad("inputs.mode", "expected online or offline")
    identity = inputs.get("identity")
    if identity is not None and identity not in IDENTITIES:
        _bad("inputs.identity", "expected card, face, card+face or override")
    catalogue = _need(inputs, "catalogue", dict, "inputs")
    _need(catalogue, "products", dict, "catalogue")
    cart = _need(inputs, "cart", list, "inputs")
    balances = inputs.get("balances") or {}
    _check_subject(subject)
    _check_balances(balances)
    offline = mode == "offline"
    offline_params = params.get("offline") or {}
    if offline:
        fraction = offline_params.get("fraction_pct")
        if type(fraction) is not int or not 0 <= fraction <= 100:
            _bad("params.offline.fraction_pct", "offline mode needs an integer 0..100")
    categories = params["categories"]
    category_ids = sorted(categories)
    ctx = {
        "params": params, "subject": subject, "shop": inputs.get("shop") or {},
        "date": date, "mode": mode, "offline": offline, "identity": identity,
        "catalogue": catalogue, "cart": cart, "offline_params": offline_params,
        "fraction_pct": offline_params.get("fraction_pct", 100),
        "caps": offline_params.get("cap") or {},
        "categories": categories, "category_ids": category_ids,
        "periods": {}, "allowance": {}, "remaining": {}, "start_remaining": {},
        "enforced": {}, "taken": {},
    }
    for cid in category_ids:
        period = period_of(params, cid, date)
        granted = allowance(subject, params, cid, period)
        left = granted - _used(balances, cid, period)
        ctx["periods"][cid] = period
        ctx["allowance"][cid] = granted
        ctx["remaining"][cid] = left
        ctx["start_remaining"][cid] = left
        ctx["enforced"][cid] = categories[cid].get("enforce", True)
    return ctx


def _sale_reasons(ctx):
    """Reasons that refuse the whole cart, before any item is looked at."""
    reasons = []
    status = ctx["subject"]["status"]
    if status == "suspended":
        reasons.append("subject_suspended")
    elif status == "revoked":
        reasons.append("subject_revoked")
    if ctx["identity"] is None:
        reasons.append("identity_missing")
    elif ctx["identity"] == "override" and not ctx["params"].get("override_allowed", False):
        reasons.append("override_not_allowed")
    if not ctx["cart"]:
        reasons.append("cart_empty")
    return reasons


def _main_action(reasons):
    best = None
    for code in reasons:
        act = action(code)
        if best is None or ACTION_ORDER.index(act) < ACTION_ORDER.index(best):
            best = act
    return best


def _item(ctx, line, entry, sale_reasons):
    if not isinstance(entry, dict):
        _bad("cart[%d]" % line, "expected object")
    product = entry.get("product")
    spec = entry.get("spec")
    packs = entry.get("packs")
    out = {"line": line, "product": product, "spec": spec, "packs": packs,
           "decision": REFUSE, "consumption": {}}
    reasons = list(sale_reasons)
    prod = pack = None
    if type(packs) is not int or packs <= 0:
        reasons.append("quantity_invalid")
    if isinstance(product, str) and isinstance(spec, str):
        prod, pack = _catalogue.pack(ctx["catalogue"], product, spec)
    if prod is None:
        reasons.append("unknown_product")
    else:
        out["unit"] = pack["unit"]
        if type(packs) is int:
            out["amount"] = packs * pack["net"]
        state = _catalogue.status_on(ctx["catalogue"], prod, ctx["date"])
        out["status"] = state["status"]
        reasons += _static_reasons(ctx, prod, state)
    if not reasons:
        consumption, short, max_packs = _quantity_reasons(ctx, prod, pack, packs)
        if short:
            reasons = short
            out["max_packs"] = max_packs
        else:
            out["consumption"] = consumption
            out["decision"] = APPROVE
            for cid in consumption:
                ctx["remaining"][cid] -= consumption[cid]
                ctx["taken"][cid] = ctx["taken"].get(cid, 0) + consumption[cid]
    out["reasons"] = reasons
    out["action"] = _main_action(reasons)
    return out


def decide(inputs):
    """Approve or refuse each cart line and the cart, and say what it consumes.

    Lines are decided in cart order against a running balance, so when the quota
    runs out the earlier lines keep it and the later ones are refused with the
    number of packs that would still fit (`max_packs`). Raises PolicyError
    (code policy_input_invalid) for inputs it cannot decide on; a refusal is a
    normal result, not an exception.
    """
    ctx = _context(inputs)
    sale_reasons = _sale_reasons(ctx)
    items = []
    for line, entry in enumerate(ctx["cart"]):
        items.append(_item(ctx, line, entry, sale_reasons))
    approved = 0
    codes = list(sale_reasons)
    for item in items:
        if item["decision"] == APPROVE:
            approved += 1
        for code in item["reasons"]:
            if code not in codes:
                codes.append(code)
    if items and approved == len(items):
        decision = APPROVE
    elif approved:
        decision = PARTIAL
    else:
        decision = REFUSE
    consumption = {}
    remaining = {}
    for cid in ctx["category_ids"]:
        if ctx["taken"].get(cid):
            consumption[cid] = ctx["taken"][cid]
        if ctx["enforced"][cid]:
            remaining[cid] = ctx["remaining"][cid]
    codes.sort()
    return {
        "policy": POLICY_VERSION,
        "params_version": ctx["params"].get("version"),
        "catalogue_version": ctx["catalogue"].get("version"),
        "decision": decision,
        "mode": ctx["mode"],
        "date": ctx["date"],
        "subject": ctx["subject"].get("id"),
        "shop": ctx["shop"].get("id"),
        "reasons": sale_reasons,
        "codes": codes,
        "action": _main_action(codes),
        "items": items,
        "consumption": consumption,
        "periods": ctx["periods"],
        "remaining": remaining,
    }
