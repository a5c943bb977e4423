"""The card-only terminal's uplink over TLS when the network fails the way a
shop's does: no reset, no answer. Through a forwarder (simulator/netem.py)
in front of the broker's TLS listener, the established connection stalls
mid-stream and new connections are accepted and never answered (the TLS
handshake waits for a ServerHello that never comes). The terminal must not
hang in either read: the sale is decided offline while the network is still
dead, and the records reach the gateway once it is back."""

from __future__ import annotations

import re
import time

import pytest

from simulator.processes import wait_for
from tests.support import quota_fixtures as fx
from tests.support.mcu_district import McuDistrict

pytestmark = pytest.mark.timeout(240)


def sell(d: McuDistrict) -> tuple[str, float]:
    started = time.monotonic()
    line = d.terminal.sell(d.cards["S-M-0001"], [{"product": fx.UREA[0], "packs": 1}], timeout=60)
    return line, time.monotonic() - started


def handshakes_timed_out(d: McuDistrict) -> int:
    return len(re.findall(r"broker connect failed: OSError\(110", d.terminal.log.read_text()))


def test_a_tls_peer_that_stops_answering_never_hangs_the_counter(tmp_path):
    d = McuDistrict(tmp_path / "district", tls="password", via_link=True).start()
    try:
        d.wait_config()
        line, _ = sell(d)
        assert line.startswith("APPROVED ")
        d.link.cut()   # mid-stream: the TLS session stays open, nothing passes any more
        line, seconds = sell(d)
        assert line.startswith("APPROVED "), line
        # the authorization's publish waited one socket timeout (5 s) for its PUBACK, not for ever
        assert seconds < 20, seconds
        # a reconnect into a listener that accepts TCP and never speaks: the handshake times out
        wait_for(lambda: handshakes_timed_out(d) >= 1, 60, "a TLS handshake timed out")
        line, seconds = sell(d)
        assert line.startswith("APPROVED ") and seconds < 20, (line, seconds)
        modes = [r["body"]["mode"] for r in d.ledger_lines() if r["type"] == "sale"]
        assert modes == ["online", "offline", "offline"]
        assert len(d.stored()) < len(d.ledger_lines())   # the offline sales did not get through
        d.link.restore()
        d.wait_acked(timeout=90)
        d.assert_exactly_once()
        line, _ = sell(d)
        assert line.startswith("APPROVED ")
        assert d.ledger_lines()[-1]["body"]["mode"] == "online"   # reconnected: online again
    finally:
        d.close()
