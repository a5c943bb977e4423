"""A district in a box: real terminal agents on simulated hardware against a real
broker and gateway. May import everything; nothing imports it."""
