"""Canonical JSON: the exact bytes a MAC and a hash are computed over.

Both sides must produce identical bytes from the same value, on CPython and on
MicroPython, so the encoding is pinned down completely (docs/protocol.md,
"Canonical encoding"): object keys sorted by code point, no whitespace, UTF-8,
only `"`, `\\` and control characters escaped, integers only. Floats are
refused outright: their decimal form differs between interpreters, and money
and quantities are counted in integer units anyway (fen, grams, millilitres).

On CPython the standard library's C encoder produces exactly these bytes and is
used for speed; MicroPython's `json` cannot sort keys, so it gets the small
encoder below. The shared test vectors prove the two agree.
"""

import json

try:
    TooDeep = RecursionError
except NameError:  # MicroPython raises RuntimeError for runaway recursion
    TooDeep = RuntimeError

MAX_SAFE_INT = 9007199254740991  # 2**53 - 1: exact in JavaScript and in any JSON reader

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class NotCanonical(ValueError):
    """The value has no canonical form (a float, a non-string key, a huge int)."""


def _stdlib_can_sort():
    try:
        json.dumps({"b": 1, "a": 2}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return True
    except TypeError:  # MicroPython's json takes no keyword arguments beyond separators
        return False


def _utf8(s):
    """The UTF-8 bytes of `s` as a memoryview. On MicroPython a str already
    holds UTF-8 and lends it as a buffer, so this copies nothing (a config
    chunk is 16,000 characters); CPython has to encode."""
    try:
        return memoryview(s)
    except TypeError:
        return memoryview(s.encode("utf-8"))


def _feed_str(s, update):
    """Feed the quoted, escaped UTF-8 of `s` to `update`, the runs between
    escapes as slices of one view: no piece per character, no copy of the
    text. Every byte that needs escaping is ASCII and no byte of a multi-byte
    UTF-8 sequence is, so the byte scan cannot split a character."""
    view = _utf8(s)
    update(b'"')
    start = 0
    for i in range(len(view)):
        b = view[i]
        if b < 0x20 or b == 0x22 or b == 0x5C:
            if i > start:
                update(view[start:i])
            short = _SHORT_ESCAPES.get(chr(b))
            update((short if short is not None else "\\u%04x" % b).encode())
            start = i + 1
    if start < len(view):
        update(view[start:])
    update(b'"')


def _escape(s):
    for ch in s:
        if ch < " " or ch == '"' or ch == "\\":
            break
    else:
        return '"' + s + '"'   # the common case: nothing to escape, nothing built per character
    # One buffer for the whole quoted text: a list of one string per
    # character kept many times the text alive at once (a 16,000-character
    # config chunk, JSON inside a string, took a 128 KB list).
    out = bytearray()
    _feed_str(s, out.extend)
    return str(out, "utf-8")


def _encode(value, out):
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if value > MAX_SAFE_INT or value < -MAX_SAFE_INT:
            raise NotCanonical("integer out of range")
        out.append(str(value))
    elif isinstance(value, str):
        out.append(_escape(value))
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        keys = list(value.keys())
        for key in keys:
            if not isinstance(key, str):
                raise NotCanonical("object key is not a string")
        keys.sort()
        for i, key in enumerate(keys):
            if i:
                out.append(",")
            out.append(_escape(key))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, float):
        raise NotCanonical("floats are not allowed; use integer units")
    else:
        raise NotCanonical("type %s has no canonical form" % type(value).__name__)


def _feed(value, update):
    """_encode's twin that hands the UTF-8 bytes to `update` as it goes."""
    if value is None:
        update(b"null")
    elif value is True:
        update(b"true")
    elif value is False:
        update(b"false")
    elif isinstance(value, int):
        if value > MAX_SAFE_INT or value < -MAX_SAFE_INT:
            raise NotCanonical("integer out of range")
        update(str(value).encode())
    elif isinstance(value, str):
        _feed_str(value, update)
    elif isinstance(value, (list, tuple)):
        update(b"[")
        for i, item in enumerate(value):
            if i:
                update(b",")
            _feed(item, update)
        update(b"]")
    elif isinstance(value, dict):
        keys = list(value.keys())
        for key in keys:
            if not isinstance(key, str):
                raise NotCanonical("object key is not a string")
        keys.sort()
        update(b"{")
        for i, key in enumerate(keys):
            if i:
                update(b",")
            _feed_str(key, update)
            update(b":")
            _feed(value[key], update)
        update(b"}")
    elif isinstance(value, float):
        raise NotCanonical("floats are not allowed; use integer units")
    else:
        raise NotCanonical("type %s has no canonical form" % type(value).__name__)


def _check(value):
    """Refuse what the stdlib encoder would happily write but we must not."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical("object key is not a string")
            _check(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check(item)
    elif isinstance(value, float):
        raise NotCanonical("floats are not allowed; use integer units")
    elif isinstance(value, int) and not isinstance(value, bool):
        if value > MAX_SAFE_INT or value < -MAX_SAFE_INT:
            raise NotCanonical("integer out of range")
    elif not (value is None or isinstance(value, (str, bool))):
        raise NotCanonical("type %s has no canonical form" % type(value).__name__)


FAST = _stdlib_can_sort()   # CPython's json sorts keys and is exact; MicroPython's cannot

if FAST:

    def dumps(value, checked=False):
        """Canonical text of `value`. `checked=True` skips the type walk for values
        that already passed schema validation (the hot path at the gateway)."""
        if not checked:
            _check(value)
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

else:

    def dumps(value, checked=False):
        out = []
        _encode(value, out)
        return "".join(out)


def encode(value, checked=False):
    """Canonical UTF-8 bytes of `value`."""
    try:
        return dumps(value, checked).encode("utf-8")
    except UnicodeError:
        raise NotCanonical("string is not valid Unicode (lone surrogate)")


def feed(value, update, checked=False):
    """Hand the canonical UTF-8 bytes of `value` to `update` (a hash's update)
    piece by piece, so a MAC or digest over a big value never has its whole
    text in memory (envelope.canonical_hmac_hex, on a small board). The bytes
    are those `encode` gives; `checked` is accepted for symmetry with it (the
    walk checks every value as it goes)."""
    try:
        _feed(value, update)
    except UnicodeError:
        raise NotCanonical("string is not valid Unicode (lone surrogate)")


def _no_float(text):
    raise NotCanonical("floats are not allowed; use integer units")


def _not_json(name):
    raise ValueError("%s is not JSON" % name)


def _hooks():
    try:
        json.loads("0", parse_float=_no_float)
        return True
    except TypeError:  # MicroPython's parser takes no hooks
        return False


_HOOKS = _hooks()


def loads(data):
    """Parse JSON text or bytes, refusing floats (NotCanonical) and the
    non-JSON NaN and Infinity (ValueError, as MicroPython's parser does);
    bytes that are not UTF-8 raise UnicodeError. MicroPython parses bytes as
    they are (its parser checks each string's UTF-8 as it makes it) and the
    result is walked instead: a 20 KB config chunk copied as text first was
    the largest block the card-only terminal asked its heap for."""
    if not _HOOKS:
        value = json.loads(data)
        _check(value)
        return value
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8")
    return json.loads(data, parse_float=_no_float, parse_constant=_not_json)
