"""What a terminal must survive, judged from outside (docs/protocol.md
"Conformance kit"). Each scenario drives the kit's gateway
(`protocols/conformance_peer.py`) and returns a verdict with the evidence.

The terminal's watermark is not visible on the wire except through what it
does: a terminal re-sends from its watermark when no ack comes, so each
scenario that feeds the terminal a doctored ack then withholds genuine ones
and reads the `after` of the re-send. A terminal that took the doctored ack
(or a broker PUBACK) for an ack re-sends from the wrong place, or never.

Every scenario also fails when the peer saw a protocol violation while it
ran (a record with a bad MAC, a seq re-used with other content, a chain
break, a batch that skips rows).

CPython only (the kit uses paho-mqtt).
"""

import random
import shlex
import subprocess
import threading

from protocols import authz, canonical, envelope, topics

PASS, FAIL, SKIP = "pass", "fail", "skip"
RECORDS_WAIT = 30.0          # s to wait for the terminal to write a new record
RESTART_WAIT = 90.0          # s for a restarted broker or terminal to be back
KIT_CARDS = 24               # fake revoked card numbers in the kit's config pushes


class Options:
    def __init__(self, ack_timeout=5.0, auth_deadline_ms=authz.DEFAULT_DEADLINE_MS, restart_broker=None,
                 restart_terminal=None, chunk_chars=60, seed=None):
        self.ack_timeout = ack_timeout
        self.auth_deadline_ms = auth_deadline_ms
        self.restart_broker = restart_broker
        self.restart_terminal = restart_terminal
        self.chunk_chars = chunk_chars
        self.rng = random.Random(seed)


class Verdict:
    def __init__(self, outcome, detail):
        self.outcome, self.detail = outcome, detail


class Failed(Exception):
    """A scenario's expectation that did not hold; the message is the evidence."""


# ---------------------------------------------------------------- helpers

def _resend_wait(options):
    """How long a conforming terminal may take to re-send without an ack:
    its ack timeout, plus room for the batch in flight and a busy machine."""
    return 2 * options.ack_timeout + 5


def _withhold(kit):
    """Stop acking and publish the watermark once more (seen = upto: no
    hole claimed); returns it."""
    with kit.cond:
        kit.acking = False
    return kit.ack_now()


def _wait_records(kit, beyond, count=1):
    if not kit.wait(lambda: kit.head() >= beyond + count, RECORDS_WAIT):
        raise Failed("no new record beyond seq %d within %ds (is the terminal selling?)" % (beyond, RECORDS_WAIT))
    return kit.head()


def _first_batch_since(kit, at, timeout, predicate=lambda b: True):
    found = []

    def seen():
        found[:] = [b for b in kit.batches if b.at >= at and predicate(b)]
        return bool(found)

    return found[0] if kit.wait(seen, timeout) else None


def _expect_resend_from(kit, options, watermark, since, what):
    """The terminal re-sends from `watermark` (a batch that repeats a seq,
    `after` = the watermark) within its ack timeout."""
    batch = _first_batch_since(kit, since, _resend_wait(options), lambda b: b.resend or b.after < watermark)
    if batch is None:
        raise Failed("%s: no re-send within %.0fs while acks were withheld: the terminal let go of records "
                     "the gateway never acknowledged (its watermark moved without an ack)"
                     % (what, _resend_wait(options)))
    if batch.after != watermark:
        raise Failed("%s: re-sent from seq %d (after=%d), but the last genuine ack was upto=%d"
                     % (what, batch.after + 1, batch.after, watermark))
    return batch


def _settle(kit):
    """Back to acking like a gateway; ack whatever arrived meanwhile, and
    wait until the terminal sends a new record (not a re-sent one): the rest
    of a re-sent window still in flight is then behind us, and cannot pass
    for the next scenario's re-send."""
    with kit.cond:
        kit.acking = True
    kit.ack_now()
    since = kit.now()
    _first_batch_since(kit, since, RECORDS_WAIT, lambda b: not b.resend)


def _run(command, what):
    proc = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=RESTART_WAIT)
    if proc.returncode != 0:
        raise Failed("%s command failed (exit %d): %s" % (what, proc.returncode, (proc.stderr or "").strip()[-300:]))


def _status_since(kit, at, timeout, predicate=lambda s: True):
    found = []

    def seen():
        found[:] = [s for t, s in kit.statuses if t >= at and predicate(s)]
        return bool(found)

    return found[-1] if kit.wait(seen, timeout) else None


# ---------------------------------------------------------------- acks

def acks_withheld(kit, options):
    watermark = _withhold(kit)
    since = kit.now()
    _wait_records(kit, watermark)
    batch = _expect_resend_from(kit, options, watermark, since, "acks withheld")
    _settle(kit)
    return "re-sent from seq %d after %.1fs without an ack" % (batch.first, batch.at - since)


def no_ack_backoff(kit, options):
    """docs/protocol.md "When no ack comes": re-sends back off, doubling."""
    watermark = _withhold(kit)
    since = kit.now()
    _wait_records(kit, watermark)
    t = options.ack_timeout
    starts = []

    def three_resends():
        starts[:] = [b.at for b in kit.batches if b.at >= since and b.after == watermark]
        return len(starts) >= 4    # the first send of seq W+1, then three re-sends of it

    if not kit.wait(three_resends, 2 * t + 4 * t + 8 * t + 15):
        raise Failed("acks withheld: %d re-sends from seq %d in %.0fs; expected three, after about %.0f, %.0f and "
                     "%.0fs" % (max(0, len(starts) - 1), watermark + 1, 14 * t + 15, t, 2 * t, 4 * t))
    gaps = [b - a for a, b in zip(starts, starts[1:4])]
    _settle(kit)
    if not (gaps[1] >= 1.5 * t and gaps[2] >= 3 * t):
        raise Failed("re-sends without an ack came %s s apart: no back-off (expected about %.0f, %.0f, %.0f s)"
                     % (", ".join("%.1f" % g for g in gaps), t, 2 * t, 4 * t))
    return "re-sends %s s apart, doubling" % ", ".join("%.1f" % g for g in gaps)


def acks_duplicated(kit, options):
    watermark = _withhold(kit)
    for _ in range(3):
        kit.publish_ack(watermark, watermark)
    since = kit.now()
    _wait_records(kit, watermark)
    batch = _expect_resend_from(kit, options, watermark, since, "ack upto=%d sent 4 times" % watermark)
    _settle(kit)
    return "ack upto=%d four times; later re-sent from seq %d" % (watermark, batch.first)


def acks_out_of_order(kit, options):
    _settle(kit)
    older = kit.ack_now()
    _wait_records(kit, older)
    kit.wait(lambda: kit.contiguous() > older, RECORDS_WAIT)
    watermark = _withhold(kit)
    if watermark <= older:
        raise Failed("could not get two acks apart (watermark %d)" % watermark)
    kit.publish_ack(older, older)       # an older ack, delivered after the newer one
    since = kit.now()
    _wait_records(kit, watermark)
    batch = _expect_resend_from(kit, options, watermark, since,
                                "ack upto=%d after ack upto=%d" % (older, watermark))
    _settle(kit)
    return "stale ack upto=%d after upto=%d ignored; re-sent from seq %d" % (older, watermark, batch.first)


def ack_beyond_head(kit, options):
    watermark = _withhold(kit)
    beyond = kit.head() + envelope.SEQ_WINDOW + 1000
    kit.publish_ack(beyond, beyond)
    since = kit.now()
    _wait_records(kit, watermark)
    batch = _expect_resend_from(kit, options, watermark, since, "ack upto=%d (beyond the head)" % beyond)
    _settle(kit)
    return "ack upto=%d ignored; re-sent from seq %d" % (beyond, batch.first)


def hole_reported(kit, options):
    watermark = _withhold(kit)
    head = _wait_records(kit, watermark, 2)
    since = kit.now()
    kit.publish_ack(watermark + 1, head)   # "stored up to W+1, and I have seen `head`: the rest is missing"
    limit = max(1.0, options.ack_timeout / 2)
    batch = _first_batch_since(kit, since, limit, lambda b: b.after == watermark + 1)
    if batch is None:
        raise Failed("ack upto=%d seen=%d: no re-send from seq %d within %.1fs (a hole must be filled at once, "
                     "not after the ack timeout)" % (watermark + 1, head, watermark + 2, limit))
    _settle(kit)
    return "ack upto=%d seen=%d: re-sent from seq %d after %.2fs" % (watermark + 1, head, batch.first,
                                                                     batch.at - since)


def forged_acks(kit, options):
    watermark = _withhold(kit)
    head = _wait_records(kit, watermark)
    other_key = bytes(options.rng.getrandbits(8) for _ in range(32))
    other = "KIT-OTHER-TERMINAL"
    # another terminal's genuine ack, replayed on this terminal's topic
    kit.publish_raw(topics.ACK, envelope.encode_ack(other_key, other, head, head), retain=True)
    # an ack naming this terminal, MACed with another terminal's key
    kit.publish_raw(topics.ACK, envelope.encode_ack(other_key, kit.terminal, head, head), retain=True)
    # an ack without a MAC
    kit.publish_raw(topics.ACK, canonical.encode({"v": 1, "terminal": kit.terminal, "upto": head, "seen": head}),
                    retain=True)
    since = kit.now()
    batch = _expect_resend_from(kit, options, watermark, since, "forged acks upto=%d" % head)
    _settle(kit)
    return "3 forged acks upto=%d refused; re-sent from seq %d" % (head, batch.first)


# ---------------------------------------------------------------- restarts

def broker_restart(kit, options):
    _settle(kit)
    watermark = kit.ack_now()
    kit.publish_raw(topics.ACK, b"", retain=True).wait_for_publish(5)   # the broker "lost" the retained ack
    with kit.cond:
        kit.acking = False
        connects = kit.connects
    since = kit.now()
    _run(options.restart_broker, "--restart-broker")
    if not kit.wait(lambda: kit.connects > connects and kit.connected, RESTART_WAIT):
        raise Failed("the kit could not reconnect to the broker within %ds" % RESTART_WAIT)
    back = kit.now()
    if _status_since(kit, back, RESTART_WAIT, lambda s: s["state"] == "online") is None:
        raise Failed("the terminal did not announce itself online within %ds of the broker's restart" % RESTART_WAIT)
    _wait_records(kit, watermark)
    batch = _first_batch_since(kit, back, _resend_wait(options))
    if batch is None:
        raise Failed("no batch within %.0fs of reconnecting" % _resend_wait(options))
    if batch.after != watermark:
        raise Failed("after the restart, without a retained ack, the terminal sent from seq %d (after=%d); its "
                     "watermark was %d" % (batch.first, batch.after, watermark))
    _settle(kit)
    if not kit.wait(lambda: kit.acked > watermark, RECORDS_WAIT):
        raise Failed("nothing acknowledged after the restart")
    return "broker restarted in %.1fs, retained ack gone; the terminal resumed from seq %d" % (back - since,
                                                                                             batch.first)


def terminal_restart(kit, options):
    watermark = _withhold(kit)
    head = _wait_records(kit, watermark)
    since = kit.now()
    _run(options.restart_terminal, "--restart-terminal")
    if _status_since(kit, since, RESTART_WAIT, lambda s: s["state"] == "online") is None:
        raise Failed("the terminal did not come back online within %ds" % RESTART_WAIT)
    batch = _first_batch_since(kit, since, _resend_wait(options), lambda b: b.first <= head or b.after < watermark)
    if batch is None:
        raise Failed("after its restart the terminal did not re-send the unacknowledged seqs %d..%d"
                     % (watermark + 1, head))
    if batch.after != watermark:
        raise Failed("after its restart the terminal re-sent from seq %d (after=%d); its watermark was %d"
                     % (batch.first, batch.after, watermark))
    _settle(kit)
    if not kit.wait(lambda: kit.head() > head and kit.contiguous() > head, RECORDS_WAIT):
        raise Failed("no new record after the restart continued the ledger beyond seq %d" % head)
    return "restarted with seqs %d..%d unacknowledged; re-sent them unchanged and went on" % (watermark + 1, head)


# ---------------------------------------------------------------- authorization

def _approve(kit, request, auth_id, sale_id=None):
    items = [{"line": i, "product": line["product"], "spec": line["spec"], "packs": line["packs"],
              "decision": "approve", "reasons": [], "consumption": {}} for i, line in enumerate(request["cart"])]
    decision = {"decision": "approve", "mode": "online", "date": authz.local_date(kit._wall_ms()), "codes": [],
                "reasons": [], "consumption": {}, "items": items}
    return authz.encode_response(kit.key, kit.terminal, request["id"], sale_id or request["sale_id"],
                                 kit._wall_ms(), authz.OK, auth=auth_id, decision=decision)


def answer_promptly(kit):
    """The kit's default: approve every request at once, as an online gateway."""
    counter = [0]

    def reply(request):
        counter[0] += 1
        kit.publish_raw(topics.AUTH_RESP, _approve(kit, request, "KIT%d" % counter[0]))

    return reply


def _one_request(kit, reply):
    """Answer the next request with `reply`; returns (request, its record)."""
    chosen = []

    def once(request):
        with kit.cond:
            first = not chosen
            if first:
                chosen.append(request)
        (reply if first else answer_promptly(kit))(request)

    with kit.cond:
        kit.auth_reply = once
    try:
        if not kit.wait(lambda: bool(chosen), RECORDS_WAIT):
            raise Failed("no authorization request within %ds (does the terminal authorize online?)"
                         % RECORDS_WAIT)
        request = chosen[0]
        if not kit.wait(lambda: request["sale_id"] in kit.by_sale, RECORDS_WAIT):
            raise Failed("no record with sale_id %s within %ds of its authorization request"
                         % (request["sale_id"], RECORDS_WAIT))
        return request, kit.records[kit.by_sale[request["sale_id"]][0]]
    finally:
        with kit.cond:
            kit.auth_reply = answer_promptly(kit)


def auth_answered(kit, options):
    auth_id = "KITOK%d" % options.rng.getrandbits(30)
    request, record = _one_request(kit, lambda r: kit.publish_raw(topics.AUTH_RESP, _approve(kit, r, auth_id)))
    body = record["body"]
    if body.get("mode") != "online" or body.get("auth") != auth_id:
        raise Failed("answered at once with auth %s; record seq %d has mode %s, auth %s"
                     % (auth_id, record["seq"], body.get("mode"), body.get("auth")))
    return "sale %s recorded online with the kit's auth id (seq %d)" % (request["sale_id"], record["seq"])


def auth_late(kit, options):
    auth_id = "KITLATE%d" % options.rng.getrandbits(30)
    delay = options.auth_deadline_ms / 1000 + 1.0
    timers = []

    def late(request):
        timer = threading.Timer(delay, lambda: kit.publish_raw(topics.AUTH_RESP, _approve(kit, request, auth_id)))
        timer.daemon = True
        timers.append(timer)
        timer.start()

    request, record = _one_request(kit, late)
    body = record["body"]
    if body.get("auth") == auth_id or body.get("mode") != "offline":
        raise Failed("the answer came %.1fs late; record seq %d has mode %s, auth %s (expected an offline "
                     "decision)" % (delay, record["seq"], body.get("mode"), body.get("auth")))
    for timer in timers:
        timer.join(delay + 1)
    kit.wait(lambda: False, 2.0)
    seqs = kit.by_sale.get(request["sale_id"], [])
    if len(seqs) != 1:
        raise Failed("sale %s was recorded %d times (seqs %s) after the late answer" % (request["sale_id"],
                                                                                    len(seqs), seqs))
    return "answered %.1fs late: decided offline (seq %d), the late answer changed nothing" % (delay, record["seq"])


def auth_bad_mac(kit, options):
    auth_id = "KITFORGED%d" % options.rng.getrandbits(30)

    def forged(request):
        message = canonical.loads(_approve(kit, request, auth_id))
        message["mac"] = ("0" if message["mac"][0] != "0" else "1") + message["mac"][1:]
        kit.publish_raw(topics.AUTH_RESP, canonical.encode(message))

    request, record = _one_request(kit, forged)
    body = record["body"]
    if body.get("auth") == auth_id or body.get("mode") != "offline":
        raise Failed("an approval with a bad MAC was used: record seq %d has mode %s, auth %s"
                     % (record["seq"], body.get("mode"), body.get("auth")))
    return "approval with a bad MAC ignored: decided offline (seq %d)" % record["seq"]


def auth_other_sale(kit, options):
    auth_id = "KITOTHER%d" % options.rng.getrandbits(30)
    other = "KIT-OTHER-SALE-%d" % options.rng.getrandbits(30)
    request, record = _one_request(kit, lambda r: kit.publish_raw(topics.AUTH_RESP, _approve(kit, r, auth_id, other)))
    body = record["body"]
    if body.get("auth") == auth_id or body.get("mode") != "offline":
        raise Failed("a genuine approval of sale %s, sent with this request's id, was used for sale %s: record "
                     "seq %d has mode %s, auth %s" % (other, request["sale_id"], record["seq"], body.get("mode"),
                                                      body.get("auth")))
    return "an approval of another sale under this request's id ignored: decided offline (seq %d)" % record["seq"]


# ---------------------------------------------------------------- config

def _cards(options, version):
    return {"cards": sorted("KIT-%d-%03d" % (version, i) for i in range(KIT_CARDS))}


def _runs(kit, section, version, timeout):
    want = "%d" % version
    return _status_since(kit, 0, timeout, lambda s: (s.get("versions") or {}).get(section) == want) is not None


def _version(options):
    return 10 ** 9 + options.rng.getrandbits(30)


def config_chunks(kit, options):
    version = _version(options)
    count = kit.push_section("revocations", version, _cards(options, version), options.chunk_chars)
    if count < 2:
        raise Failed("the kit's section fits one chunk; lower --chunk-chars")
    if not _runs(kit, "revocations", version, RECORDS_WAIT):
        raise Failed("pushed revocations version %d in %d chunks; the terminal's status never reported it"
                     % (version, count))
    return "revocations version %d in %d chunks: stored and reported" % (version, count)


def config_repeated(kit, options):
    version = _version(options)
    content = _cards(options, version)
    count = kit.push_section("revocations", version, content, options.chunk_chars, twice=True)
    if not _runs(kit, "revocations", version, RECORDS_WAIT):
        raise Failed("pushed version %d with every chunk twice; the terminal never reported it" % version)
    kit.push_section("revocations", version, content, options.chunk_chars)
    return "version %d with each of %d chunks twice, then the whole again: stored and reported" % (version, count)


def config_bad_mac(kit, options):
    version = _version(options)
    content = _cards(options, version)
    kit.push_section("revocations", version, content, options.chunk_chars, bad_mac_index=0)
    if _runs(kit, "revocations", version, max(5.0, options.ack_timeout)):
        raise Failed("a chunk with a bad MAC was accepted: the terminal reported version %d" % version)
    kit.push_section("revocations", version, content, options.chunk_chars)
    if not _runs(kit, "revocations", version, RECORDS_WAIT):
        raise Failed("after refusing the forged chunk, the terminal did not take the genuine push of version %d"
                     % version)
    return "version %d with a forged chunk not taken; the genuine push then was" % version


# ---------------------------------------------------------------- the list

# (name, what it checks, the option it needs or None, function)
SCENARIOS = [
    ("acks-withheld", "no ack: re-send from the watermark, a PUBACK moves nothing", None, acks_withheld),
    ("no-ack-backoff", "no ack for long: re-sends back off, doubling", None, no_ack_backoff),
    ("acks-duplicated", "the same ack four times", None, acks_duplicated),
    ("acks-out-of-order", "an older ack after a newer one", None, acks_out_of_order),
    ("ack-beyond-head", "an ack beyond the terminal's head", None, ack_beyond_head),
    ("hole-reported", "ack with seen > upto: re-send at once from upto + 1", None, hole_reported),
    ("forged-acks", "acks from another terminal's topic and key, without a MAC", None, forged_acks),
    ("broker-restart", "broker restarts and loses the retained ack", "restart_broker", broker_restart),
    ("terminal-restart", "terminal restarts with unacknowledged rows: no seq re-used", "restart_terminal",
     terminal_restart),
    ("auth-answered", "an authorization answered at once is used", None, auth_answered),
    ("auth-late", "an authorization answered after the deadline changes nothing", None, auth_late),
    ("auth-bad-mac", "an authorization with a bad MAC is ignored", None, auth_bad_mac),
    ("auth-other-sale", "an answer naming another sale_id is ignored", None, auth_other_sale),
    ("config-chunks", "a config section in many chunks", None, config_chunks),
    ("config-repeated", "every chunk twice, then the section again", None, config_repeated),
    ("config-bad-mac", "a chunk with a bad MAC is not taken", None, config_bad_mac),
]
NAMES = [name for name, _, _, _ in SCENARIOS]
# What each scenario checks, for the table (Simplified Chinese first, like every screen of the project).
ZH = {
    "acks-withheld": "不回确认：从水位重发，代理的 PUBACK 不算确认",
    "no-ack-backoff": "长时间无确认：重发间隔加倍退避",
    "acks-duplicated": "同一确认重复四次",
    "acks-out-of-order": "旧确认晚于新确认到达",
    "ack-beyond-head": "确认序号超过终端最新记录",
    "hole-reported": "确认报告缺号：立即从缺号处重发",
    "forged-acks": "伪造确认（他台终端的、他人密钥的、无签名的）",
    "broker-restart": "消息代理重启且丢失保留的确认",
    "terminal-restart": "终端断电重启：不重用序号",
    "auth-answered": "联网授权即时答复：按答复记账",
    "auth-late": "授权答复超时：离线决定，迟到答复不改变任何东西",
    "auth-bad-mac": "授权答复签名错误：不予采信",
    "auth-other-sale": "答复属于另一笔销售：不予采信",
    "config-chunks": "配置分多块下发",
    "config-repeated": "配置块重复下发",
    "config-bad-mac": "配置块签名错误：不予采用",
    "whole-run": "全程：签名、哈希链、序号、批次",
}
LABELS = {PASS: "通过 PASS", FAIL: "失败 FAIL", SKIP: "未运行 SKIP"}
NEEDS_FLAG = {"restart_broker": "--restart-broker", "restart_terminal": "--restart-terminal"}


def run_one(kit, options, name):
    """Run scenario `name`; a Verdict. Violations the peer saw while it ran fail it."""
    _, _, needs, fn = next(s for s in SCENARIOS if s[0] == name)
    if needs and not getattr(options, needs):
        return Verdict(SKIP, "not run: give %s CMD" % NEEDS_FLAG[needs])
    with kit.cond:
        before = len(kit.violations)
    try:
        detail = fn(kit, options)
        outcome = PASS
    except Failed as err:
        detail, outcome = str(err), FAIL
    except subprocess.TimeoutExpired as err:
        detail, outcome = "command did not finish: %s" % shlex.quote(str(err.cmd)), FAIL
    finally:
        with kit.cond:
            kit.acking = True   # a scenario that failed half-way must not leave the next one without acks
    with kit.cond:
        new = kit.violations[before:]
    if new:
        seen = "; ".join("%s: %s" % v for v in new[:3])
        detail = seen if outcome == PASS else seen + " | " + detail
        outcome = FAIL
    return Verdict(outcome, detail)
