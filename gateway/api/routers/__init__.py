"""One router per concern of the supervision API; `gateway.api.app` includes them all."""
