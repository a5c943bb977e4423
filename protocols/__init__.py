"""Contracts shared by terminals (CPython and MicroPython) and the gateway.

Nothing here imports the rest of the project, and the modules the terminals
and the gateway load run under MicroPython too: see docs/protocol.md and
tests/test_protocol_vectors.py. CPython only, and never imported by those:
the command lines (`cli`, `*_cli`), `transport` (paho and ssl), the schema
generator (`schema_export`, `wire_fields`) and the conformance kit
(`conformance_*`, the gateway's side rebuilt from this package alone).
"""

PROTOCOL_VERSION = 1
