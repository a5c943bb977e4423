"""Face identity at the counter: capture quality, 128-d encodings, 1:1 verification
and 1:N identification against the shop's gallery, enrollment, a basic liveness
check, and the gallery file encrypted at rest.

Importing this package is cheap; dlib and its models (about a second to load) are
imported only by `firmware.face.pipeline`, so the agent and the CLI pay for them
only when a face is actually processed. See docs/face.md for the measured
thresholds and what the liveness check does and does not catch.
"""
