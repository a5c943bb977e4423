"""A tiny schema checker for messages on the wire, small enough for MicroPython.

A schema is a plain tuple, so message shapes are data that both sides share:

    ("str", max_len)            a string of at most max_len characters
    ("id",)                     1-64 chars of A-Z a-z 0-9 _ - . :
    ("hex", length)             lowercase hex of exactly `length` characters
    ("int", lo, hi)             an integer (not a bool) with lo <= n <= hi
    ("bool",)
    ("enum", (a, b, ...))       one of the listed strings
    ("list", item, lo, hi)      a list of lo..hi items
    ("map", value, hi)          an object with at most hi entries, keys ("id",)
    ("obj", {name: (schema, required)})   exactly these fields, no others
    ("object",)                 any object (its fields are checked elsewhere)

`check` raises SchemaError naming the path of the first bad field, e.g.
`body.items[2].packs: expected integer >= 1`, so a quarantined record says
precisely what was wrong with it.
"""

from protocols.canonical import MAX_SAFE_INT

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:")
_HEX_CHARS = frozenset("0123456789abcdef")


class SchemaError(ValueError):
    def __init__(self, path, problem):
        super().__init__("%s: %s" % (path or "message", problem))
        self.path = path
        self.problem = problem


def is_id(value):
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return False
    for ch in value:
        if ch not in _ID_CHARS:
            return False
    return True


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check(value, schema, path=""):
    kind = schema[0]
    if kind == "obj":
        if not isinstance(value, dict):
            raise SchemaError(path, "expected object")
        fields = schema[1]
        for name in value:
            if name not in fields:
                raise SchemaError(path, "unknown field %r" % (name,))
        for name, spec in fields.items():
            sub = path + "." + name if path else name
            if name in value:
                check(value[name], spec[0], sub)
            elif spec[1]:
                raise SchemaError(sub, "required field missing")
    elif kind == "object":
        if not isinstance(value, dict):
            raise SchemaError(path, "expected object")
    elif kind == "str":
        if not isinstance(value, str):
            raise SchemaError(path, "expected string")
        if len(value) > schema[1]:
            raise SchemaError(path, "longer than %d characters" % schema[1])
    elif kind == "id":
        if not is_id(value):
            raise SchemaError(path, "expected identifier of 1-64 characters [A-Za-z0-9_.:-]")
    elif kind == "hex":
        if not isinstance(value, str) or len(value) != schema[1]:
            raise SchemaError(path, "expected %d lowercase hex digits" % schema[1])
        for ch in value:
            if ch not in _HEX_CHARS:
                raise SchemaError(path, "expected %d lowercase hex digits" % schema[1])
    elif kind == "int":
        if not _is_int(value):
            raise SchemaError(path, "expected integer")
        if value < schema[1] or value > schema[2]:
            if schema[2] >= MAX_SAFE_INT:
                raise SchemaError(path, "expected integer >= %d" % schema[1])
            raise SchemaError(path, "expected integer in %d..%d" % (schema[1], schema[2]))
    elif kind == "bool":
        if not isinstance(value, bool):
            raise SchemaError(path, "expected true or false")
    elif kind == "enum":
        if value not in schema[1]:
            raise SchemaError(path, "expected one of %s" % ", ".join(schema[1]))
    elif kind == "list":
        if not isinstance(value, list):
            raise SchemaError(path, "expected list")
        if len(value) < schema[2] or len(value) > schema[3]:
            raise SchemaError(path, "expected %d..%d items" % (schema[2], schema[3]))
        for i, item in enumerate(value):
            check(item, schema[1], "%s[%d]" % (path, i))
    elif kind == "map":
        if not isinstance(value, dict):
            raise SchemaError(path, "expected object")
        if len(value) > schema[2]:
            raise SchemaError(path, "more than %d entries" % schema[2])
        for key, item in value.items():
            if not is_id(key):
                raise SchemaError(path, "bad key %r" % (key,))
            check(item, schema[1], path + "." + key)
    else:
        raise SchemaError(path, "bad schema kind %r" % (kind,))


def INT(lo=0, hi=MAX_SAFE_INT):
    return ("int", lo, hi)


def STR(max_len):
    return ("str", max_len)


ID = ("id",)
OBJECT = ("object",)
BOOL = ("bool",)


def ENUM(*values):
    return ("enum", values)


def LIST(item, lo, hi):
    return ("list", item, lo, hi)


def MAP(value, hi):
    return ("map", value, hi)


def OBJ(required=None, optional=None):
    fields = {}
    for name, spec in (required or {}).items():
        fields[name] = (spec, True)
    for name, spec in (optional or {}).items():
        fields[name] = (spec, False)
    return ("obj", fields)


def HEX(length):
    return ("hex", length)
