"""Schemathesis against the published OpenAPI (/openapi.json), logged in as a
district user: whatever it generates, no 5xx, documented status codes and
content types, and schema-conforming responses. Bounded examples keep it fast."""

import atexit
import shutil
import tempfile
from pathlib import Path

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings


from gateway.api import create_app
from tests.support.api_world import PASSWORD, T0, build


def _world():
    """Built at import: schemathesis parametrizes from a schema object, and its
    fixture-based loader does not work with this pytest. The directory goes
    with the process (tests/ never leaves files behind in the tree)."""
    root = Path(tempfile.mkdtemp(prefix="schemathesis-"))
    atexit.register(shutil.rmtree, root, True)
    clock = {"now": T0}
    db = build(root, clock)
    clock["now"] = T0 + 300_000
    app = create_app(db, clock=lambda: clock["now"], photos_dir=root / "photos")
    with TestClient(app) as client:
        token = client.post("/api/login", json={"name": "d1", "password": PASSWORD}).json()["token"]
    return app, {"Authorization": f"Bearer {token}"}


APP, AUTH = _world()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_and_never_errors(case):
    if case.path == "/api/logout":
        return  # would end the shared session for the remaining operations
    case.call_and_validate(headers=AUTH if case.path != "/api/login" else None)


def test_openapi_lists_the_api():
    with TestClient(APP) as client:
        spec = client.get("/openapi.json").json()
    assert {"/api/login", "/api/cases", "/api/cases/{case_id}/close", "/api/subjects/{subject_id}", "/api/terminals",
            "/api/overview", "/api/upstream"} <= set(spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
