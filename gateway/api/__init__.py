"""The supervision API and dashboard (FastAPI), served by the gateway process.

`create_app` is imported on first use, so `gateway run` can check its HTTPS
options (gateway/api/serve.py) without loading FastAPI into the ingest process."""

__all__ = ["create_app"]


def __getattr__(name):
    if name == "create_app":
        from gateway.api.app import create_app
        return create_app
    raise AttributeError(name)
