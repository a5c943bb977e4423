"""`python -m gateway faces`: the enrolled face encodings terminals match against.

    faces import FILE --db PATH       JSON lines from `python -m firmware face encode`
    faces remove SUBJECT... --db PATH forget subjects' faces
    faces list --db PATH              enrolled subjects, one JSON line each

Photos never reach the gateway: they are encoded where they are taken, with the
counter's own capture checks (docs/face.md "Enrollment"), and only the 128-d
encodings are imported. An import may run while the gateway runs; the shops
serving the subjects get a new `gallery` section within a sweep (2 s).
`import` prints one JSON object: subjects and encodings imported, the faces
revision, and `similar`: pairs of enrolled subjects whose faces lie within 0.5
of each other (possibly one farmer holding two subject cards: check them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from gateway.enforcement import faces

from gateway import store
from gateway.store import DB_HELP
from gateway.store import faces as faces_store
from protocols import facegallery


def _now() -> int:
    return int(time.time() * 1000)


def _connect(path: str, must_exist: bool):
    if must_exist and not store.is_postgres(path) and not store.sqlite_path(path).is_file():
        raise FileNotFoundError(f"no such database: {path}")
    return store.connect(path)


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description="enrolled face encodings (never photos)")
    sub = parser.add_subparsers(dest="action", required=True)
    imp = sub.add_parser("import", help="import encodings (JSON lines from `python -m firmware face encode`)")
    imp.add_argument("file")
    rem = sub.add_parser("remove", help="forget subjects' faces")
    rem.add_argument("subjects", nargs="+")
    sub.add_parser("list", help="enrolled subjects")
    for p in (imp, rem, sub.choices["list"]):
        p.add_argument("--db", required=True, help=DB_HELP)
    args = parser.parse_args(argv)
    try:
        if args.action == "import":
            entries = faces.parse_import(Path(args.file).read_text("utf-8"), Path(args.file).name)
            conn = _connect(args.db, True)
            rev = faces.import_faces(conn, entries, _now())
            out = {"imported": len(entries), "encodings": sum(len(r) for _, r in entries) // facegallery.ROW_BYTES,
                   "rev": rev, "similar": faces.similar(conn, entries)}
            print(json.dumps(out, ensure_ascii=False))
        elif args.action == "remove":
            gone = faces.remove(_connect(args.db, True), args.subjects)
            print(json.dumps({"removed": gone}))
        else:
            for row in faces_store.enrolled(_connect(args.db, True)):
                print(json.dumps(row, ensure_ascii=False))
    except (faces.FacesError, OSError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 1
    return 0
