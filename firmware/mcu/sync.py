"""Config sync, card-only terminal side: the sections it decides with
(catalogue, params, shop, subjects, balances, revocations), verified with the
terminal's key and reassembled as protocols/configsync.py says, each kept on
flash in a file of its own, replaced atomically.

Chunks are appended to a file as they arrive, not held in RAM, with the SHA-256
of the whole computed on the way; only a complete section whose digest
matches is parsed, checked (`configsync.check_section`) and swapped in. The
catalogue, subjects and balances are instead read from flash an entry at a
time, checked as they go, into an index of one entry a line: a sale reads
the lines it needs (a town's subjects do not fit a ~100 KB heap whole). The
face `gallery` is of no use without a camera: its chunks are dropped unread,
and the version the gateway announced is reported as run, so the gateway does
not push it again every minute (docs/mcu.md "Limits").
"""

import binascii
import gc
import hashlib
import json
import os

from protocols import configsync, reasons

KEPT = ("catalogue", "params", "shop", "subjects", "balances", "revocations")
# Sections also kept as an index, one entry a line (`<name>.idx`), that a sale
# reads a line at a time: parsed whole, a town's subjects (thousands of
# entries, hundreds of KB of text) would not fit the heap. The table of each
# streamed entry by entry, and whether it is a JSON list or object ({ or [).
INDEXED = ("catalogue", "subjects", "balances")
ROWS = {"subjects": ("subjects", 91), "balances": ("used", 123)}
SKIPPED = ("gallery",)


class ConfigStore:
    def __init__(self, directory, terminal, key, log=None, on_change=None):
        self.dir = directory
        self.terminal = terminal
        self._key = key
        self._log = log or (lambda *a: None)
        self.on_change = on_change or (lambda name: None)
        self._versions = {}
        self._partial = {}      # section -> [version, digest, count, next index, hash]
        self.announced = {}
        self.rejected = 0
        self._cache = {}
        try:
            os.mkdir(directory)
        except OSError:
            pass
        for name in KEPT:
            try:
                with open(self._file(name)) as f:
                    self._versions[name] = int(f.readline())
            except (OSError, ValueError):
                pass
        gc.collect()   # as Ledger.open: the version files' garbage gone before what lives on is made

    def _file(self, name):
        return "%s/%s.json" % (self.dir, name)

    def versions(self):
        out = {}
        for name in self._versions:
            out[name] = "%d" % self._versions[name]
        for name in SKIPPED:
            if name in self.announced:
                out[name] = "%d" % self.announced[name]
        return out

    def section(self, name):
        """The stored content of a section (None before its first sync); read
        from flash each time for the big ones, so RAM holds it only while used."""
        if name in self._cache:
            return self._cache[name]
        if name not in self._versions:
            return None
        with open(self._file(name)) as f:
            f.readline()
            content = json.load(f)
        if name in ("params", "shop", "revocations"):
            self._cache[name] = content
        return content

    def on_message(self, payload):
        try:
            message = configsync.decode(payload, self._key)
            if message["terminal"] != self.terminal:
                raise configsync.Invalid("terminal_mismatch", message["terminal"])
            if message["kind"] == "manifest":
                for name in message["sections"]:
                    self.announced[name] = message["sections"][name]["version"]
                return
            self._chunk(message)
        except configsync.Invalid as err:
            self.rejected += 1
            self._log("config message refused: %s %s" % (err.code, err.detail))

    def _chunk(self, m):
        name = m["section"]
        if name not in KEPT:
            if name in SKIPPED:
                self.announced[name] = m["version"]
            return
        if m["version"] == self._versions.get(name) and name not in self._partial:
            return                               # the version it runs, pushed again: stored once
        key = (m["version"], m["digest"], m["count"])
        held = self._partial.get(name)
        if held is not None and held[0] == key and m["index"] < held[1]:
            return                               # a chunk it already has, delivered twice
        if held is None or held[0] != key or held[1] != m["index"]:
            if m["index"] != 0:
                self._partial.pop(name, None)   # out of order: wait for the next push from chunk 0
                return
            held = [key, 0, hashlib.sha256()]
            self._partial[name] = held
            open(self._file(name) + ".part", "w").close()
        data = m["data"]
        with open(self._file(name) + ".part", "a") as f:
            f.write(data)
        held[2].update(data)   # MicroPython hashes a str's UTF-8 in place: no 16 KB copy
        held[1] += 1
        if held[1] < m["count"]:
            return
        del self._partial[name]
        if binascii.hexlify(held[2].digest()).decode() != m["digest"]:
            raise configsync.Invalid("config_digest_mismatch", "%s version %d" % (name, m["version"]))
        part = self._file(name) + ".part"
        if name in INDEXED:
            try:
                if name == "catalogue":
                    self._index_catalogue(m["version"], part)
                else:
                    self._index_rows(name, m["version"], part)
            except configsync.Invalid:
                os.remove(part)
                raise
            with open(self._file(name) + ".new", "w") as f, open(part) as text:
                f.write("%d\n" % m["version"])
                _copy(text, f)
                f.flush()
        else:
            with open(part) as f:
                content = json.load(f)
            configsync.check_section(name, content)
            with open(self._file(name) + ".new", "w") as f:
                f.write("%d\n" % m["version"])
                json.dump(content, f)
                f.flush()
        os.rename(self._file(name) + ".new", self._file(name))
        os.remove(part)
        if name in INDEXED:
            os.rename(self._idx(name) + ".new", self._idx(name))
        self._versions[name] = m["version"]
        self._cache.pop(name, None)
        self._log("config section %s version %d stored" % (name, m["version"]))
        self.on_change(name)

    # -- the catalogue, a product at a time

    def _idx(self, name="catalogue"):
        return "%s/%s.idx" % (self.dir, name)

    def _index_catalogue(self, version, path):
        """catalogue.idx.new from the section text in `path`: the catalogue one
        entry a line (a header with the section version and the small fields,
        then `P<TAB>key<TAB>product` and `I<TAB>name<TAB>ingredient` lines), so
        a sale reads the entries of its cart's products and nothing else
        (the products first: a sale learns from them which ingredients to keep).

        The section is read from flash an entry at a time and checked as it
        goes (protocols.catalogue.check_ingredient / check_product): parsed
        whole, the district catalogue took ~105 KB of a 64-bit heap for 25 KB
        of text, the terminal's largest allocation. Canonical text puts the
        ingredients before the products, which are checked against them.
        Raises configsync.Invalid as check_section would; the caller renames
        the index in after the section itself (a header of another version,
        after a power cut in between, is not used)."""
        from protocols import catalogue
        small, names, eans, tables = {}, {}, {}, {}
        bodies = (self._idx() + ".p", self._idx() + ".i")
        try:
            with open(path, "rb") as f, open(bodies[0], "w") as out, open(bodies[1], "w") as out_i:
                for table, key, text in _members(f, ("ingredients", "products")):
                    # each entry's garbage goes before the next is read: without it the
                    # names and EANs kept on the way sat spread over the whole free heap
                    # (MicroPython allocates upward until a collection), and the longest
                    # free block shrank below one entry's text
                    gc.collect()
                    if table is None:
                        small[key] = json.loads(text)
                    elif key is None:
                        tables[table] = True
                        if table == "products" and "ingredients" not in tables:
                            raise catalogue.CatalogueError("catalogue_invalid", "products before ingredients")
                    elif table == "ingredients":
                        value = json.loads(text)
                        catalogue.check_ingredient(key, value)
                        names[key] = True
                        out_i.write("I\t%s\t%s\n" % (key, json.dumps(value)))
                    else:
                        value = json.loads(text)
                        catalogue.check_product(key, value, names, eans)
                        out.write("P\t%s\t%s\n" % (key, json.dumps(value)))
            if type(small.get("version")) is not int:
                raise catalogue.CatalogueError("catalogue_invalid", "version: expected integer")
            if len(tables) != 2:
                raise catalogue.CatalogueError("catalogue_invalid", "needs ingredients and products objects")
            with open(self._idx() + ".new", "w") as f:
                f.write(json.dumps({"section": version, "fields": small}) + "\n")
                for body in bodies:
                    with open(body) as lines:
                        _copy(lines, f)
                f.flush()
        except (ValueError, reasons.ReasonError) as err:
            raise configsync.Invalid("config_invalid", "catalogue: %s" % err)
        finally:
            for body in bodies:
                try:
                    os.remove(body)
                except OSError:
                    pass

    def catalogue_for(self, products):
        """The synced catalogue cut down to `products` and the ingredients they
        name: everything protocols.policy and protocols.catalogue read for a
        cart of those products, so the decision is the one the whole catalogue
        gives. None before the first sync."""
        version = self._versions.get("catalogue")
        if version is None:
            return None
        try:
            f = open("%s/catalogue.idx" % self.dir)
        except OSError:
            return _subset(self.section("catalogue"), products)
        with f:
            head = json.loads(f.readline())
            if head.get("section") != version:
                return _subset(self.section("catalogue"), products)
            out = head["fields"]
            out["products"], out["ingredients"] = {}, {}
            wanted = {}
            for line in f:
                kind, key, text = line.rstrip("\n").split("\t", 2)
                if kind == "P" and key in products:
                    prod = out["products"][key] = json.loads(text)
                    for name in prod.get("ingredients", {}):
                        wanted[name] = True
                elif kind == "I" and key in wanted:
                    out["ingredients"][key] = json.loads(text)
        return out

    def scan_candidates(self, parsed):
        """The synced products a parsed scan (protocols.labelcode.parse) can
        name, as a small catalogue: for a label unit code those whose
        registration number ends in its six digits, for an EAN-13 those with
        that barcode on a pack. protocols.labelcode.resolve over it gives what
        it gives over the whole catalogue, one product line in RAM at a time.
        None before the first sync."""
        from protocols import catalogue as _catalogue
        if self._versions.get("catalogue") is None:
            return None
        try:
            f = open("%s/catalogue.idx" % self.dir)
        except OSError:
            return None
        keys = []
        with f:
            f.readline()
            for line in f:
                if not line.startswith("P\t"):
                    continue
                kind, key, text = line.rstrip("\n").split("\t", 2)
                if parsed["kind"] == "unit_code":
                    if _catalogue.label_key(key) == (parsed["class"], parsed["reg6"]):
                        keys.append(key)
                elif parsed["code"] in text:
                    packs = json.loads(text)["packs"]
                    for spec in packs:
                        if packs[spec].get("ean") == parsed["code"]:
                            keys.append(key)
        return self.catalogue_for(keys)

    # -- subjects and balances, a subject at a time

    def _index_rows(self, name, version, path):
        """`<name>.idx.new` from the section text in `path`: a header with the
        section version and the small fields (the town; rev and acked), then
        `<subject id><TAB><entry>` a line: a subject's registry entry, or its
        used figures. A sale reads the line of its buyer and parses only that.

        The section is read from flash an entry at a time (`_members`), each
        entry checked against the schema configsync.check_section checks the
        whole with (configsync.SECTION_SCHEMAS), and the small fields with the
        table's place taken by an empty one, so it refuses what that check
        refuses. Raises configsync.Invalid; the caller renames the index in
        after the section itself (a header of another version, after a power
        cut in between, is not used: the lookups read the section whole)."""
        from protocols import schema
        table, opener = ROWS[name]
        whole = configsync.SECTION_SCHEMAS[name]
        spec = whole[1][table][0]           # ("list", item, lo, hi) or ("map", item, hi)
        item = schema.checker(spec[1])      # compiled once, not for every entry
        most = spec[-1]
        small, count, opened = {}, 0, False
        body = self._idx(name) + ".b"
        try:
            with open(path, "rb") as f, open(body, "w") as out:
                for key, entry, text in _members(f, (table,), opener):
                    gc.collect()            # as the catalogue: one entry's garbage gone before the next
                    if key is None:
                        if entry == table:
                            raise schema.SchemaError(table, "expected %s" % ("list" if opener == 91 else "object"))
                        small[entry] = json.loads(text)
                    elif entry is None:
                        if opened:
                            raise schema.SchemaError(table, "given twice")
                        opened = True
                    else:
                        value = json.loads(text)
                        count += 1
                        if count > most:
                            raise schema.SchemaError(table, "more than %d entries" % most)
                        if opener == 91:
                            where, sid = "[%d]" % (count - 1), value.get("id") if isinstance(value, dict) else None
                        else:
                            where, sid = entry, entry
                            if not schema.is_id(entry):
                                raise schema.SchemaError(table, "bad key %r" % (entry,))
                        try:
                            item(value)
                        except schema.SchemaError as err:
                            raise err.within(where).within(table)
                        out.write("%s\t%s\n" % (sid, json.dumps(value)))
            fields = dict(small)
            if opened:
                small[table] = [] if opener == 91 else {}
            schema.check(small, whole, name)
            with open(self._idx(name) + ".new", "w") as f:
                f.write(json.dumps({"section": version, "fields": fields}) + "\n")
                with open(body) as lines:
                    _copy(lines, f)
                f.flush()
        except (ValueError, reasons.ReasonError) as err:   # SchemaError is a ValueError
            raise configsync.Invalid("config_invalid", "%s: %s" % (name, err))
        finally:
            try:
                os.remove(body)
            except OSError:
                pass

    def _row(self, name, sid):
        """(small fields, parsed line of `sid` or None) from `<name>.idx`, read
        a line at a time; None when there is no index of the stored version."""
        try:
            f = open(self._idx(name))
        except OSError:
            return None
        with f:
            head = json.loads(f.readline())
            if head.get("section") != self._versions.get(name):
                return None
            prefix = sid + "\t"
            for line in f:
                if line.startswith(prefix):
                    return head["fields"], json.loads(line[len(prefix):])
            return head["fields"], None

    def subject_entry(self, sid):
        """The synced registry entry of subject `sid` (the first, as a search
        of the section gives), or None (also before the first sync)."""
        if "subjects" not in self._versions:
            return None
        row = self._row("subjects", sid)
        if row is not None:
            return row[1]
        for entry in self.section("subjects")["subjects"]:
            if entry["id"] == sid:
                return entry
        return None

    def balance(self, sid):
        """(rev, acked, used) of subject `sid` from the synced balances, or
        None when they hold no figures for it (or before the first sync)."""
        if "balances" not in self._versions:
            return None
        row = self._row("balances", sid)
        if row is None:
            section = self.section("balances")
            used = section["used"].get(sid)
            return None if used is None else (section["rev"], section["acked"], used)
        fields, used = row
        return None if used is None else (fields["rev"], fields["acked"], used)

    def revoked(self):
        section = self.section("revocations")
        return section["cards"] if section else []


def _copy(src, dst):
    while True:
        block = src.read(512)
        if not block:
            return
        dst.write(block)


class _Text:
    """A JSON text read from a file a block at a time, as bytes: the
    structural characters are ASCII, which UTF-8 never uses inside a
    multi-byte character, and indexing bytes makes no objects (indexing a str
    interns each non-ASCII character as a qstr, for good: a catalogue's
    Chinese names grew the heap until it ran out)."""

    def __init__(self, f):
        self.f = f
        self.buf = b""
        self.i = 0

    def peek(self):
        """The next byte that is not white space (-1 at the end)."""
        while True:
            if self.i >= len(self.buf):
                self.buf, self.i = self.f.read(512), 0
                if not self.buf:
                    return -1
            c = self.buf[self.i]
            if c not in b" \t\r\n":
                return c
            self.i += 1

    def take(self, expected):
        if self.peek() != expected:
            raise ValueError("JSON: %r expected" % chr(expected))
        self.i += 1

    def value(self):
        """The text of the next JSON value, whole, without parsing it."""
        if self.peek() < 0:
            raise ValueError("JSON: value expected")
        parts = []
        depth, in_string, escaped = 0, False, False
        while True:
            buf, i, start = self.buf, self.i, self.i
            n = len(buf)
            while i < n:
                c = buf[i]
                i += 1
                if in_string:
                    if escaped:
                        escaped = False
                    elif c == 92:       # backslash
                        escaped = True
                    elif c == 34:       # "
                        in_string = False
                        if depth == 0:
                            break
                elif c == 34:
                    in_string = True
                elif c == 123 or c == 91:       # { [
                    depth += 1
                elif c == 125 or c == 93:       # } ]
                    if depth == 0:      # the end of the object this scalar is in
                        i -= 1
                        break
                    depth -= 1
                    if depth == 0:
                        break
                elif c == 44 and depth == 0:    # ,
                    i -= 1
                    break
            else:
                parts.append(buf[start:])
                self.buf, self.i = self.f.read(512), 0
                if not self.buf:
                    if depth or in_string:
                        raise ValueError("JSON: text ends inside a value")
                    return b"".join(parts).decode()
                continue
            parts.append(buf[start:i])
            self.i = i
            return b"".join(parts).decode()


def _members(f, tables, opener=123):
    """(None, key, value text) for each member of the top-level JSON object in
    `f`, except the objects named in `tables`: (table, None, None) where one
    opens, then its own members one by one as (table, key, value text). With
    `opener` 91 the tables are lists instead, their items (table, index,
    value text). Only one entry's text is in RAM at a time."""
    t = _Text(f)
    closer = opener + 2                   # } or ]
    t.take(123)                           # {
    while t.peek() != 125:                # }
        key = json.loads(t.value())
        t.take(58)                        # :
        if key in tables and t.peek() == opener:
            t.take(opener)
            yield key, None, None
            index = 0
            while t.peek() != closer:
                if opener == 123:
                    entry = json.loads(t.value())
                    t.take(58)
                else:
                    entry = index
                    index += 1
                yield key, entry, t.value()
                if t.peek() == 44:        # ,
                    t.take(44)
            t.take(closer)
        else:
            yield None, key, t.value()
        if t.peek() == 44:
            t.take(44)
    t.take(125)


def _subset(content, products):
    out = {}
    for key in content:
        if key not in ("products", "ingredients"):
            out[key] = content[key]
    out["products"] = {}
    out["ingredients"] = {}
    for key in products:
        prod = content["products"].get(key)
        if prod is not None:
            out["products"][key] = prod
            for name in prod.get("ingredients", {}):
                out["ingredients"][name] = content["ingredients"][name]
    return out
