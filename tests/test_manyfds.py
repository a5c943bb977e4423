"""select() through poll(): the fleet process's way past FD_SETSIZE."""

import os
import resource
import socket

import pytest

from simulator import manyfds


@pytest.fixture
def high_pair():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.fail(f"this machine allows only {hard} open files; the fleet needs more")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    a, b = socket.socketpair()
    try:
        assert a.fileno() >= 1024 and b.fileno() >= 1024
        yield a, b
    finally:
        a.close()
        b.close()
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_select_refuses_high_descriptors_and_poll_does_not(high_pair):
    a, b = high_pair
    with pytest.raises(ValueError):
        manyfds._original([a], [], [], 0)
    assert manyfds.select_by_poll([a], [b], [], 0) == ([], [b], [])   # nothing to read yet, room to write
    b.send(b"x")
    assert manyfds.select_by_poll([a, b], [], [], 1.0)[0] == [a]
    b.close()
    a.recv(1)
    assert manyfds.select_by_poll([a], [], [], 1.0)[0] == [a]           # EOF reads as readable, as in select


def test_same_answers_as_select_below_the_ceiling():
    a, b = socket.socketpair()
    try:
        for rl, wl in (([a], [b]), ([a, b], []), ([], [a])):
            assert manyfds.select_by_poll(rl, wl, [], 0) == manyfds._original(rl, wl, [], 0)
        b.send(b"y")
        assert manyfds.select_by_poll([a], [], [], 0) == manyfds._original([a], [], [], 0) == ([a], [], [])
    finally:
        a.close()
        b.close()
    with pytest.raises(ValueError):
        manyfds.select_by_poll([-1], [], [], 0)
