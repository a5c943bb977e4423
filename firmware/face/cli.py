"""`python -m firmware face`: enroll, identify and verify faces against a gallery.

    python -m firmware face enroll   --gallery PATH --subject ID --image FILE [--image FILE...]
    python -m firmware face identify --gallery PATH --image FILE
    python -m firmware face verify   --gallery PATH --subject ID --image FILE
    python -m firmware face encode   --subject ID --image FILE [--image FILE...]

Each prints one JSON object on stdout. identify: `subject` (null when refused),
`distance`, `margin`, and `reason` when refused; verify: `subject`, `match`,
`distance`, `reason` when not matched; enroll: `subject`, `enrolled` (photos
used), `encodings` (kept for the subject), `rejected`, `similar`, `reason` when
nothing was enrolled; encode: `subject`, `enrolled`, `rejected`, `reason` as
enroll does, `model`, and `encodings` as the list itself (lists of 128 numbers,
empty when refused), one line to append to the file `python -m gateway faces
import` reads, so the shop galleries are built from the same checks and model
the counter uses. A refusal is an answer, not a failure: the exit status is 0
whether or not a face matched or was enrolled, 2 for bad usage, 1 for input that
cannot be read (image, gallery, device key), with the reason on stderr.

The gallery is encrypted with the device key (see `firmware.face.devicekey` for
where it is looked up); `enroll` creates a dev key when it creates a new gallery.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path

from firmware.face import devicekey, errors
from firmware.face import gallery as gallery_file
from firmware.face.errors import FaceError, PoorCapture
from firmware.face.matching import MatchConfig

log = logging.getLogger(__name__)


class Unreadable(Exception):
    """Input that cannot be read: exit status 1."""


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Face enrollment and matching against an encrypted gallery.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, subject: bool, many: bool):
        p.add_argument("--gallery", required=True, type=Path, help="gallery file (encrypted with the device key)")
        if subject:
            p.add_argument("--subject", required=True, help="subject id (as on the subject card)")
        p.add_argument("--image", required=True, action="append" if many else "store", type=Path,
                       help="photo file" + (" (repeat for several photos)" if many else ""))
        p.add_argument("--key-file", type=Path, default=None,
                       help="device key file (default: $%s, else ~/.config/agri-quota/face-gallery.key)"
                       % devicekey.ENV)
        p.add_argument("--max-distance", type=float, default=MatchConfig.max_distance,
                       help="largest encoding distance accepted as the same person (default %(default)s)")

    enroll = sub.add_parser("enroll", help="add a subject's face from one or more photos")
    common(enroll, subject=True, many=True)
    enroll.add_argument("--append", action="store_true", help="keep the subject's earlier encodings")
    identify = sub.add_parser("identify", help="who is this? (1:N over the gallery)")
    common(identify, subject=False, many=False)
    identify.add_argument("--min-margin", type=float, default=MatchConfig.min_margin,
                          help="refuse when the next subject is closer than this to the best (default %(default)s)")
    verify = sub.add_parser("verify", help="is this the card holder? (1:1)")
    common(verify, subject=True, many=False)
    encode = sub.add_parser("encode", help="a subject's encodings for `python -m gateway faces import` (no gallery)")
    encode.add_argument("--subject", required=True, help="subject id (as on the subject card)")
    encode.add_argument("--image", required=True, action="append", type=Path,
                        help="photo file (repeat for several photos)")
    encode.add_argument("--max-distance", type=float, default=MatchConfig.max_distance,
                        help="largest distance between two photos of the subject (default %(default)s)")
    return parser


def _read_image(path: Path):
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)  # phone photos are often stored on their side
            return np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise Unreadable("cannot read image %s: %s" % (path, exc)) from None


def _key(args, creating: bool) -> bytes:
    path = args.key_file or devicekey.default_path()
    if creating and not path.exists():
        return devicekey.read_or_create(path)
    return devicekey.read(path)


def _load(args):
    if not args.gallery.exists():
        raise Unreadable("no gallery at %s" % args.gallery)
    return gallery_file.load(args.gallery, _key(args, creating=False))


def _capture(pipeline, image):
    try:
        return pipeline.capture(image), None
    except PoorCapture as exc:
        return None, exc.code


def _enroll(args, config: MatchConfig) -> dict:
    from firmware.face.enrollment import enroll
    from firmware.face.pipeline import FacePipeline

    images = [(str(p), _read_image(p)) for p in args.image]
    creating = not args.gallery.exists()
    key = _key(args, creating)
    current = gallery_file.Gallery() if creating else gallery_file.load(args.gallery, key)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    updated, report = enroll(FacePipeline(), current, args.subject, images, append=args.append,
                             config=config, created=now)
    if report.enrolled:
        gallery_file.save(args.gallery, updated, key)
    return report.as_dict()


def _identify(args, config: MatchConfig) -> dict:
    from firmware.face.matching import Matcher
    from firmware.face.pipeline import FacePipeline

    image = _read_image(args.image)
    matcher = Matcher(_load(args), config)
    capture, reason = _capture(FacePipeline(), image)
    if capture is None:
        return {"subject": None, "distance": None, "margin": None, "reason": reason}
    return matcher.identify(capture.encoding).as_dict()


def _verify(args, config: MatchConfig) -> dict:
    from firmware.face.matching import Matcher
    from firmware.face.pipeline import FacePipeline

    image = _read_image(args.image)
    matcher = Matcher(_load(args), config)
    if matcher.gallery.index_of(args.subject) is None:
        return {"subject": args.subject, "match": False, "distance": None, "reason": errors.NOT_ENROLLED}
    capture, reason = _capture(FacePipeline(), image)
    if capture is None:
        return {"subject": args.subject, "match": False, "distance": None, "reason": reason}
    return matcher.verify(args.subject, capture.encoding).as_dict()


def _encode(args, config: MatchConfig) -> dict:
    """Enrollment into an empty gallery: the same photo checks, no file written."""
    from firmware.face.enrollment import enroll
    from firmware.face.pipeline import FacePipeline

    images = [(str(p), _read_image(p)) for p in args.image]
    updated, report = enroll(FacePipeline(), gallery_file.Gallery(), args.subject, images, config=config)
    out = report.as_dict()
    del out["similar"]  # nothing to compare with here: the gateway's import reports it
    out["model"] = gallery_file.MODEL
    out["encodings"] = [[float(v) for v in row] for row in updated.encodings_of(args.subject)]
    return out


COMMANDS = {"enroll": _enroll, "identify": _identify, "verify": _verify, "encode": _encode}


def main(argv=None, prog: str = "python -m firmware face") -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    args = _parser(prog).parse_args(argv)
    config = MatchConfig(max_distance=args.max_distance,
                         min_margin=getattr(args, "min_margin", MatchConfig.min_margin))
    try:
        result = COMMANDS[args.command](args, config)
    except Unreadable as exc:
        print("%s: %s" % (prog, exc), file=sys.stderr)
        return 1
    except FaceError as exc:
        print("%s: %s (%s)" % (prog, exc, exc.text("en")), file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False))
    return 0
