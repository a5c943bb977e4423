"""How a person's name is shown where it need not be read in full: the
counter's screen and receipt, the supervision desk for roles that see masked
names, an inspector's sheet. One rule everywhere, so a farmer recognises the
same masked name on a receipt and on an inspector's paper."""


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
