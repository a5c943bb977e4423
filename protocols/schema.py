"""A tiny schema checker for messages on the wire, small enough for MicroPython.

A schema is a plain tuple, so message shapes are data that both sides share:

    ("str", max_len)            a string of at most max_len characters
    ("id",)                     1-64 chars of A-Z a-z 0-9 _ - . :
    ("hex", length)             lowercase hex of exactly `length` characters
    ("hex", lo, hi)             lowercase hex of lo..hi characters (a variable-length byte
                                string, e.g. a card payload; an odd length is the reader's to refuse)
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

import sys

from protocols.canonical import MAX_SAFE_INT

# Compiled checkers are kept (`checker`) except on MicroPython: a card-only
# terminal's heap is ~100 KB, and the checkers of every message kind it had
# seen (closures, tuples, strings: ~12 KB on a 32-bit port) stayed in it for
# good, spread over the free heap wherever the first message of each kind
# happened to find room (docs/mcu.md "Memory and size"). There a check
# compiles its schema again, into garbage.
_KEEP = sys.implementation.name != "micropython"

ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:")
HEX_CHARS = frozenset("0123456789abcdef")


class SchemaError(ValueError):
    def __init__(self, path, problem):
        super().__init__("%s: %s" % (path or "message", problem))
        self.path = path
        self.problem = problem

    def within(self, name):
        """The same error seen from the enclosing field `name` (or "[i]")."""
        if not self.path:
            path = name
        elif self.path[0] == "[":
            path = name + self.path
        else:
            path = name + "." + self.path
        return SchemaError(path, self.problem)


def is_id(value):
    return isinstance(value, str) and 0 < len(value) <= 64 and ID_CHARS.issuperset(value)


def _compile_obj(schema):
    fields = []
    for name, spec in schema[1].items():
        fields.append((name, checker(spec[0]), spec[1]))
    names = frozenset(schema[1])

    def check_obj(value):
        if not isinstance(value, dict):
            raise SchemaError("", "expected object")
        for name in value:
            if name not in names:
                raise SchemaError("", "unknown field %r" % (name,))
        for name, fn, required in fields:
            if name in value:
                try:
                    fn(value[name])
                except SchemaError as err:
                    raise err.within(name)
            elif required:
                raise SchemaError(name, "required field missing")

    return check_obj


def _compile_list(schema):
    item, lo, hi = checker(schema[1]), schema[2], schema[3]

    def check_list(value):
        if not isinstance(value, list):
            raise SchemaError("", "expected list")
        if len(value) < lo or len(value) > hi:
            raise SchemaError("", "expected %d..%d items" % (lo, hi))
        for i, x in enumerate(value):
            try:
                item(x)
            except SchemaError as err:
                raise err.within("[%d]" % i)

    return check_list


def _compile_map(schema):
    item, hi = checker(schema[1]), schema[2]

    def check_map(value):
        if not isinstance(value, dict):
            raise SchemaError("", "expected object")
        if len(value) > hi:
            raise SchemaError("", "more than %d entries" % hi)
        for key, x in value.items():
            if not is_id(key):
                raise SchemaError("", "bad key %r" % (key,))
            try:
                item(x)
            except SchemaError as err:
                raise err.within(key)

    return check_map


def _compile_int(schema):
    lo, hi = schema[1], schema[2]

    def check_int(value):
        if type(value) is not int:  # bool is not an int here
            raise SchemaError("", "expected integer")
        if value < lo or value > hi:
            if hi >= MAX_SAFE_INT:
                raise SchemaError("", "expected integer >= %d" % lo)
            raise SchemaError("", "expected integer in %d..%d" % (lo, hi))

    return check_int


def _compile_str(schema):
    limit = schema[1]

    def check_str(value):
        if not isinstance(value, str):
            raise SchemaError("", "expected string")
        if len(value) > limit:
            raise SchemaError("", "longer than %d characters" % limit)

    return check_str


def _check_id(value):
    if not is_id(value):
        raise SchemaError("", "expected identifier of 1-64 characters [A-Za-z0-9_.:-]")


def _compile_hex(schema):
    lo, hi = schema[1], schema[-1]

    def check_hex(value):
        if not isinstance(value, str) or not lo <= len(value) <= hi or not HEX_CHARS.issuperset(value):
            if lo == hi:
                raise SchemaError("", "expected %d lowercase hex digits" % lo)
            raise SchemaError("", "expected %d..%d lowercase hex digits" % (lo, hi))

    return check_hex


def _check_bool(value):
    if not isinstance(value, bool):
        raise SchemaError("", "expected true or false")


def _check_object(value):
    if not isinstance(value, dict):
        raise SchemaError("", "expected object")


def _compile_enum(schema):
    values = schema[1]

    def check_enum(value):
        if not isinstance(value, str) or value not in values:
            raise SchemaError("", "expected one of %s" % ", ".join(values))

    return check_enum


_COMPILERS = {
    "obj": _compile_obj, "list": _compile_list, "map": _compile_map, "int": _compile_int,
    "str": _compile_str, "hex": _compile_hex, "enum": _compile_enum,
    "id": lambda schema: _check_id, "bool": lambda schema: _check_bool, "object": lambda schema: _check_object,
}
_compiled = {}


def checker(schema):
    """A checking function for `schema` (cached, but on MicroPython: `_KEEP`):
    schemas are walked once, not on every message, which matters at tens of
    thousands of records a second."""
    cached = _compiled.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    compiler = _COMPILERS.get(schema[0])
    if compiler is None:
        raise ValueError("bad schema kind %r" % (schema[0],))
    fn = compiler(schema)
    if _KEEP:
        _compiled[id(schema)] = (schema, fn)
    return fn


def check(value, schema, path=""):
    """Raise SchemaError naming the first bad field, prefixed with `path`."""
    try:
        checker(schema)(value)
    except SchemaError as err:
        if path:
            raise err.within(path)
        raise


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


def HEX(length, max_length=None):
    """Exactly `length` hex digits, or `length`..`max_length` of them. The
    fixed form stays a 2-tuple; readers take the bounds as `spec[1]` and
    `spec[-1]` (the gateway's fast path too: record bodies carry the
    variable-length hex of an identity proof)."""
    if max_length is None or max_length == length:
        return ("hex", length)
    return ("hex", length, max_length)
