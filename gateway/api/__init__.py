"""The supervision API and dashboard (FastAPI), served by the gateway process."""

from gateway.api.app import create_app

__all__ = ["create_app"]
