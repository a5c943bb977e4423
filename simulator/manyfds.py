"""`select.select` without its 1,024-descriptor ceiling, for the fleet process.

paho's network loop waits with `select.select`, which refuses any descriptor
numbered 1,024 or more (FD_SETSIZE). A Pi runs one agent and never gets near
that; a simulator process holding a thousand agents (a socket and a handful of
SQLite files each) gets far past it, and every paho client above the line
fails to connect, silently retrying for ever. `lift()` puts a poll()-based
function with select's signature in its place, in this process only.
"""

from __future__ import annotations

import select

_original = select.select
_IN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR | select.POLLNVAL
_OUT = select.POLLOUT | select.POLLHUP | select.POLLERR | select.POLLNVAL


def _fd(obj) -> int:
    fd = obj if isinstance(obj, int) else obj.fileno()
    if fd < 0:
        raise ValueError("file descriptor cannot be a negative integer (%d)" % fd)
    return fd


def select_by_poll(rlist, wlist, xlist, timeout=None):
    """What select.select returns, for any descriptor number."""
    rmap = {_fd(o): o for o in rlist}
    wmap = {_fd(o): o for o in wlist}
    xmap = {_fd(o): o for o in xlist}
    masks: dict[int, int] = {}
    for fd in rmap:
        masks[fd] = masks.get(fd, 0) | select.POLLIN | select.POLLPRI
    for fd in wmap:
        masks[fd] = masks.get(fd, 0) | select.POLLOUT
    for fd in xmap:
        masks[fd] = masks.get(fd, 0) | select.POLLPRI
    poller = select.poll()
    for fd, mask in masks.items():
        poller.register(fd, mask)
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be non-negative")
    events = poller.poll(None if timeout is None else timeout * 1000)
    r, w, x = [], [], []
    for fd, ev in events:
        if fd in rmap and ev & _IN:
            r.append(rmap[fd])
        if fd in wmap and ev & _OUT:
            w.append(wmap[fd])
        if fd in xmap and ev & select.POLLPRI:
            x.append(xmap[fd])
    return r, w, x


def lift() -> None:
    select.select = select_by_poll
