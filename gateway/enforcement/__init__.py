"""Enforcement: the authoritative quota ledger, online authorization, the
subject and product registry, the terminals' credentials, and config push.
Stands on `store` and `ingest`; supervision, the API and the commands stand
on it."""
