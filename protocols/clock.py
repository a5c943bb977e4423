"""The calendar time a process runs on: the wall clock, or the simulator's
virtual clock.

A simulated season has to pass in minutes, and every side has to agree on the
date: the terminal stamps its records with it, and the gateway's time windows
(quota periods, split purchases, silence, opening hours, case deadlines) read
it. So the virtual clock is a pure function of real time that each process
computes alike from one environment variable, inherited by every child:

    AGRI_CLOCK = "<virtual start ms>@<real start ms>x<speed>"
    virtual now = virtual start + (real now - real start) * speed

No messages and no drift between processes. Only calendar time is scaled:
timeouts (MQTT keepalive, the authorization deadline, retries) are about
networks and CPUs and stay in real time.

Pure; runs on MicroPython (which has no os.environ: there it is the wall clock).
"""

import time

ENV = "AGRI_CLOCK"


class Clock:
    def __init__(self, virtual_start_ms=None, real_start_ms=None, speed=1.0):
        self.virtual_start_ms = virtual_start_ms
        self.real_start_ms = real_start_ms
        self.speed = speed

    @property
    def virtual(self):
        return self.virtual_start_ms is not None

    def wall_ms(self):
        real = int(time.time() * 1000)
        if self.virtual_start_ms is None:
            return real
        return self.virtual_start_ms + int((real - self.real_start_ms) * self.speed)

    def real_s_until(self, virtual_ms):
        """Real seconds until the clock shows `virtual_ms` (negative when past)."""
        return (virtual_ms - self.wall_ms()) / 1000.0 / self.speed

    def spec(self):
        """The AGRI_CLOCK value that makes another process run on this clock."""
        if self.virtual_start_ms is None:
            return ""
        return "%d@%dx%s" % (self.virtual_start_ms, self.real_start_ms, repr(float(self.speed)))


def parse(text):
    """A Clock from an AGRI_CLOCK value; "" is the wall clock; ValueError otherwise."""
    text = (text or "").strip()
    if not text:
        return Clock()
    try:
        start, rest = text.split("@")
        real, speed = rest.split("x")
        clock = Clock(int(start), int(real), float(speed))
    except ValueError:
        raise ValueError("%s must be '<virtual start ms>@<real start ms>x<speed>', not %r" % (ENV, text))
    if not clock.speed > 0:
        raise ValueError("%s speed must be positive: %r" % (ENV, text))
    return clock


def virtual(virtual_start_ms, speed):
    """A virtual clock that shows `virtual_start_ms` now and runs `speed` times faster."""
    return Clock(int(virtual_start_ms), int(time.time() * 1000), speed)


def _from_environment():
    try:
        import os
        return parse(os.environ.get(ENV, ""))
    except (ImportError, AttributeError):
        return Clock()


CLOCK = _from_environment()


def wall_ms():
    """Milliseconds since the epoch on this process's clock."""
    return CLOCK.wall_ms()


def real_ms():
    """Real milliseconds since the epoch, virtual clock or not: for what is
    about people rather than the calendar (a login session lasts a working day
    of the person at the screen, not of the simulated district)."""
    return int(time.time() * 1000)
