"""Reason codes: stable machine-readable codes with a text for people in Chinese
and English, from one catalogue.

A refusal the clerk sees, the record the gateway stores and the alert an inspector
reads all carry the same code. Each module registers the codes it raises next to
the rules that raise them (`register`), and everything looks texts up here, so a
code has exactly one wording. Codes are lower_snake ASCII and never change meaning
once published; new ones may be added.
"""

_CATALOGUE = {}


def register(table):
    """Add {code: (zh, en)}; a code registered twice with other texts is a bug."""
    for code, texts in table.items():
        old = _CATALOGUE.get(code)
        if old is not None and old != texts:
            raise ValueError("reason code %s registered twice with different texts" % code)
        _CATALOGUE[code] = texts
    return table


def text(code, lang="zh"):
    """The text for a code in 'zh' (default) or 'en'; the code itself if unknown."""
    texts = _CATALOGUE.get(code)
    if texts is None:
        return code
    return texts[1] if lang == "en" else texts[0]


def known(code):
    return code in _CATALOGUE


def codes():
    return sorted(_CATALOGUE)


class ReasonError(Exception):
    """An error that carries a stable reason code and a detail for logs.

    Subclasses per package (e.g. `envelope.Invalid`) keep `except` clauses narrow;
    the code is what callers store and show.
    """

    def __init__(self, code, detail=""):
        super().__init__(code, detail)
        self.code = code
        self.detail = detail

    def __str__(self):
        if self.detail:
            return "%s: %s" % (self.code, self.detail)
        return self.code

    def text(self, lang="zh"):
        return text(self.code, lang)
