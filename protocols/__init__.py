"""Contracts shared by terminals (CPython and MicroPython) and the gateway.

Nothing here imports the rest of the project, and every module except `cli`
runs under MicroPython: see docs/protocol.md and tests/test_protocol_vectors.py.
"""

PROTOCOL_VERSION = 1
