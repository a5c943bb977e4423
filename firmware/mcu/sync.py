"""Config sync, card-only terminal side: the sections it decides with
(catalogue, params, shop, subjects, balances, revocations), verified with the
terminal's key and reassembled as protocols/configsync.py says, each kept on
flash in a file of its own, replaced atomically.

Chunks are appended to a file as they arrive, not held in RAM, with the SHA-256
of the whole computed on the way; only a complete section whose digest
matches is parsed, checked (`configsync.check_section`) and swapped in. The
face `gallery` is of no use without a camera: its chunks are dropped unread,
and the version the gateway announced is reported as run, so the gateway does
not push it again every minute (docs/mcu.md "Limits").
"""

import binascii
import hashlib
import json
import os

from protocols import configsync

KEPT = ("catalogue", "params", "shop", "subjects", "balances", "revocations")
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
        with open(self._file(name) + ".part") as f:
            content = json.load(f)
        configsync.check_section(name, content)
        with open(self._file(name) + ".new", "w") as f:
            f.write("%d\n" % m["version"])
            json.dump(content, f)
            f.flush()
        os.rename(self._file(name) + ".new", self._file(name))
        os.remove(self._file(name) + ".part")
        self._versions[name] = m["version"]
        self._cache.pop(name, None)
        if name == "catalogue":
            self._write_index(m["version"], content)
        self._log("config section %s version %d stored" % (name, m["version"]))
        self.on_change(name)

    # -- the catalogue, a product at a time

    def _write_index(self, version, content):
        """catalogue.idx: the catalogue one entry a line (a header with the
        section version and the small fields, then `P<TAB>key<TAB>product` and
        `I<TAB>name<TAB>ingredient` lines), so a sale reads the entries of its
        cart's products and nothing else. Written after the section itself; a
        header of another version (a power cut in between) is not used."""
        small = {}
        for key in content:
            if key not in ("products", "ingredients"):
                small[key] = content[key]
        path = "%s/catalogue.idx" % self.dir
        with open(path + ".new", "w") as f:
            f.write(json.dumps({"section": version, "fields": small}) + "\n")
            for kind, table in (("P", content["products"]), ("I", content.get("ingredients", {}))):
                for key in table:
                    f.write("%s\t%s\t%s\n" % (kind, key, json.dumps(table[key])))
            f.flush()
        os.rename(path + ".new", path)

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

    def revoked(self):
        section = self.section("revocations")
        return section["cards"] if section else []


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
