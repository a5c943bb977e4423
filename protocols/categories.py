"""Quota categories in words, Chinese and English, for every screen that shows
a balance: the clerk's kiosk and receipt, and the supervision dashboard. Here,
below both, so the counter and the desk call a category by the same name.
Not imported by the MicroPython terminal (its OLED shows no balances)."""

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
