"""Request bodies: `extra="forbid"`, so a misspelt field is refused, not ignored."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from gateway.api.security import Ident, Notes, Secret


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Ident
    password: Secret


class Assign(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee: Ident
    notes: Notes | None = None


class Inspect(BaseModel):
    model_config = ConfigDict(extra="forbid")
    result: Literal["violation_found", "no_violation_found", "rectified_on_site"]
    notes: Notes | None = None


class Close(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["confirmed", "dismissed", "penalised"]
    notes: Notes | None = None


class Confirm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["confirm", "reject"]
    outcome: Literal["confirmed", "dismissed", "penalised"]
    notes: Notes | None = None
