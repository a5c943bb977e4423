"""The terminal agent on the shop's Raspberry Pi: identity, enforcement, the
ledger and its outbox, the MQTT uplink. Imports `protocols` and `hardware`."""
