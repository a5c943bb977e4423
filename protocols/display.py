"""Words the counter and the supervision desk both show: quota categories by
name and unit, amounts as a person reads them, subjects by masked name. Here,
below both (the kiosk and receipt in firmware and terminal_ui, the dashboard in
gateway.api), so a farmer is 张*丰 and a balance is 104 kg on both sides. The
MicroPython terminal imports it only to show a buyer's remaining quota
(firmware/mcu/quota_screen.py), and lets go of it after."""

CATEGORY_NAMES = {
    "fert_n": ("氮肥（折纯N）", "Nitrogen (pure N)"),
    "fert_total": ("化肥（折纯）", "Fertilizer (pure nutrients)"),
    "fert_k2o": ("钾肥（折纯K2O）", "Potash (pure K2O)"),
    "pesticide_g": ("农药（固体）", "Pesticide (solid)"),
    "pesticide_ml": ("农药（液体）", "Pesticide (liquid)"),
    "ai_carbofuran": ("克百威有效成分", "Carbofuran (active)"),
    "ai_omethoate": ("氧乐果有效成分", "Omethoate (active)"),
}


def category_name(category, lang="zh"):
    """The category's name in `lang`; the code itself for a category a
    district added without a name here."""
    names = CATEGORY_NAMES.get(category)
    if names is None:
        return category
    return names[1] if lang == "en" else names[0]


def category_unit(category, params):
    """g, mL or mg: the unit the policy counts a category in (docs/policy.md)."""
    spec = ((params or {}).get("categories") or {}).get(category) or {}
    if spec.get("basis") == "ingredient":
        return "mg"
    if spec.get("basis") == "product" and spec.get("unit") == "mL":
        return "mL"
    return "g"


def amount_text(amount, unit):
    """Base units (g, mL, mg) as a person reads them: 23000 g -> 23 kg."""
    big = {"g": (1000, "kg"), "mL": (1000, "L"), "mg": (1000, "g")}.get(unit)
    if big and abs(amount) >= big[0]:
        whole, rest = divmod(abs(amount), big[0])
        sign = "-" if amount < 0 else ""
        if rest == 0:
            return "%s%d %s" % (sign, whole, big[1])
        return "%s%d.%s %s" % (sign, whole, ("%03d" % rest).rstrip("0"), big[1])
    return "%d %s" % (amount, unit)


def mask_name(name):
    """张三丰 -> 张*丰, 张三 -> 张*, a cooperative's long name keeps its first and
    last two characters. Enough for the farmer to recognise, not to identify."""
    if not name:
        return "—"
    if len(name) <= 2:
        return name[0] + "*"
    if len(name) <= 4:
        return name[0] + "*" * (len(name) - 2) + name[-1]
    return name[:2] + "*" * (len(name) - 4) + name[-2:]
