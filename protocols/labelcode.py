"""Pesticide label QR codes (MoA Announcement No. 2579) and plain EAN-13 barcodes.

Since 2018-01-01 every pesticide sales pack carries a QR (or Data Matrix) code
whose content is the producer's traceability URL plus a 32-digit unit
identification code (单元识别代码):

    digit 1       registration class: 1 = PD (农药登记证), 2 = WP (卫生用农药),
                  3 = LS (临时登记)
    digits 2-7    the last six digits of the registration number
    digit 8       production type: 1 = made by the holder, 2 = contract
                  manufacture (委托加工), 3 = contract sub-packaging (委托分装)
    digits 9-11   product specification code, assigned by the company
    digits 12-32  random code, unique per pack; the announcement defines no
                  check digit, so a mistyped code is caught only by the
                  fixed-field checks and the catalogue lookup

How the URL and the code are put together is the producer's choice (a query
parameter, a path segment, a second line), so the parser looks for the one run of
exactly 32 digits anywhere in the content instead of parsing the URL; the URL is
kept for the ledger but never trusted or fetched. Longer or shorter digit runs
are never cut to size: a 33-digit run is a misread, not a code.
"""

from protocols.catalogue import ean_valid
from protocols.reasons import ReasonError, register

CLASSES = {"1": "PD", "2": "WP", "3": "LS"}
PRODUCTION = {"1": "holder", "2": "contract", "3": "subpack"}
UNIT_CODE_LEN = 32

REASONS = register({
    "labelcode_empty": ("扫码内容为空，请重新扫描", "Nothing was scanned: scan again"),
    "labelcode_no_unit_code": ("未找到32位单元识别代码，请扫描农药标签二维码", "No 32-digit unit code found: scan the pesticide label QR code"),
    "labelcode_length": ("单元识别代码位数不对（应为32位数字），请重新扫描", "The unit code has the wrong number of digits (32 expected): scan again"),
    "labelcode_multiple_codes": ("扫码内容含多个单元识别代码，无法确定", "The scan holds more than one unit code"),
    "labelcode_class_invalid": ("单元识别代码第1位（登记类别）无效", "Unit code digit 1 (registration class) is not 1, 2 or 3"),
    "labelcode_production_invalid": ("单元识别代码第8位（生产类型）无效", "Unit code digit 8 (production type) is not 1, 2 or 3"),
    "labelcode_ambiguous": ("登记证号后六位对应多个产品，请手工选择", "The registration digits match several products: choose by hand"),
    "barcode_check_digit": ("条码校验位错误，请重新扫描", "Barcode check digit is wrong: scan again"),
    "barcode_length": ("条码位数不对（支持13位EAN条码和32位单元识别代码）", "Unsupported number of digits (EAN-13 or a 32-digit unit code expected)"),
    "barcode_unknown": ("目录中查无此条码，请扫描标签二维码或手工选择", "Barcode not in the catalogue: scan the label QR code or choose by hand"),
})

ACTIONS = {
    "labelcode_empty": "rescan",
    "labelcode_no_unit_code": "rescan",
    "labelcode_length": "rescan",
    "labelcode_multiple_codes": "choose_by_hand",
    "labelcode_class_invalid": "rescan",
    "labelcode_production_invalid": "rescan",
    "labelcode_ambiguous": "choose_by_hand",
    "barcode_check_digit": "rescan",
    "barcode_length": "rescan",
    "barcode_unknown": "choose_by_hand",
    "unknown_product": "choose_by_hand",
}


class LabelError(ReasonError):
    """A scan that names no product; the code says what the clerk should retry."""


def _digit_runs(text):
    runs = []
    start = -1
    for i in range(len(text) + 1):
        is_digit = i < len(text) and "0" <= text[i] <= "9"
        if is_digit and start < 0:
            start = i
        elif not is_digit and start >= 0:
            runs.append(text[start:i])
            start = -1
    return runs


def _squeeze(text):
    """Digits typed by hand in groups ("1092 9271 ...") become one run; else None."""
    digits = ""
    for ch in text:
        if "0" <= ch <= "9":
            digits += ch
        elif ch not in " -\t":
            return None
    return digits


def parse_unit_code(code):
    """Split a 32-digit unit code into its fields, checking the fixed ones."""
    if len(code) != UNIT_CODE_LEN or not code.isdigit():
        raise LabelError("labelcode_length", "%d characters" % len(code))
    cls = CLASSES.get(code[0])
    if cls is None:
        raise LabelError("labelcode_class_invalid", code[0])
    production = PRODUCTION.get(code[7])
    if production is None:
        raise LabelError("labelcode_production_invalid", code[7])
    return {
        "kind": "unit_code",
        "code": code,
        "class": cls,
        "reg6": code[1:7],
        "production": production,
        "spec": code[8:11],
        "serial": code[11:],
    }


def parse(text):
    """A scan (QR content, barcode, or digits typed by hand) as a dict, or LabelError.

    kind "unit_code": the fields of parse_unit_code plus "url" (or None);
    kind "ean13": "code".
    """
    if not isinstance(text, str) or not text.strip():
        raise LabelError("labelcode_empty")
    text = text.strip()
    typed = _squeeze(text)
    if typed is not None:
        if len(typed) == 13:
            if not ean_valid(typed):
                raise LabelError("barcode_check_digit", typed)
            return {"kind": "ean13", "code": typed}
        if not UNIT_CODE_LEN - 4 <= len(typed) <= UNIT_CODE_LEN + 4:
            raise LabelError("barcode_length", "%d digits" % len(typed))
        runs = [typed]
    else:
        runs = _digit_runs(text)
    found = []
    near = False
    for run in runs:
        if len(run) == UNIT_CODE_LEN:
            if run not in found:
                found.append(run)
        elif UNIT_CODE_LEN - 4 <= len(run) <= UNIT_CODE_LEN + 4:
            near = True
    if len(found) > 1:
        raise LabelError("labelcode_multiple_codes", ",".join(found))
    if not found:
        raise LabelError("labelcode_length" if near else "labelcode_no_unit_code", text[:64])
    result = parse_unit_code(found[0])
    result["url"] = _url(text)
    return result


def _url(text):
    for scheme in ("https://", "http://"):
        at = text.find(scheme)
        if at >= 0:
            end = at
            while end < len(text) and text[end] not in " \t\r\n":
                end += 1
            return text[at:end]
    return None


def resolve(parsed, index):
    """{"product", "spec"} for a parsed scan, looked up in a catalogue.Index."""
    if parsed["kind"] == "ean13":
        hit = index.ean(parsed["code"])
        if hit is None:
            raise LabelError("barcode_unknown", parsed["code"])
        return {"product": hit[0], "spec": hit[1], "code": parsed["code"]}
    keys = index.label(parsed["class"], parsed["reg6"])
    matches = []
    for key in keys:
        if parsed["spec"] in index.data["products"][key]["packs"]:
            matches.append(key)
    if not matches:
        raise LabelError("unknown_product", "%s..%s spec %s" % (parsed["class"], parsed["reg6"], parsed["spec"]))
    if len(matches) > 1:
        raise LabelError("labelcode_ambiguous", ",".join(matches))
    return {"product": matches[0], "spec": parsed["spec"], "code": parsed["code"]}


def scan(text, index):
    """parse + resolve: what the scanner hands the cart."""
    return resolve(parse(text), index)
