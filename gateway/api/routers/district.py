"""District-wide state: the feed to the provincial platform and the audit
log of personal-data reads. District staff only."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from gateway.api import queries
from gateway.api.deps import Context, context, current_user
from gateway.api.errors import ApiError
from gateway.api.security import Ident
from gateway.store.users import User

router = APIRouter()


@router.get("/api/upstream", tags=["upstream"])
def upstream_state(user: User = Depends(current_user), ctx: Context = Depends(context)) -> dict:
    """The feed to the provincial platform: district-wide, so district staff only."""
    if user.role != "district":
        raise ApiError(403, "forbidden_role", "the upstream feed is for district staff")
    return queries.upstream(ctx.db.conn())


@router.get("/api/audit", tags=["audit"])
def audit_log(target: Ident | None = None, limit: int = Query(100, ge=1, le=500),
              user: User = Depends(current_user), ctx: Context = Depends(context)) -> dict:
    """Who read which personal data when: district staff only."""
    if user.role != "district":
        raise ApiError(403, "forbidden_area", "audit log is for district staff")
    return {"entries": queries.audit_entries(ctx.db.conn(), target, limit)}
