"""Wall-clock milliseconds since the Unix epoch (UTC), as the wire wants them.

MicroPython ports differ in their epoch: the unix port counts from 1970, the
ESP32 port from 2000 (time.gmtime(0) says which). On a board the clock is set
by NTP at start (docs/mcu.md); until then records carry the board's idea of
the time, as a Pi's would after a dead RTC battery."""

import time

_OFFSET_MS = 946684800000 if time.gmtime(0)[0] == 2000 else 0


def wall_ms():
    return time.time_ns() // 1000000 + _OFFSET_MS
