"""The central side: MQTT ingest, verification, dedup, the authoritative store.
Imports `protocols` only; meets terminals on the wire."""
