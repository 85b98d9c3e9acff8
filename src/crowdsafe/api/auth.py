"""Bearer-token authentication and role checks, as FastAPI dependencies.

Roles are ordered: viewer (read) < operator (acknowledge alerts) < admin (site changes). Only
the ``Authorization: Bearer`` header is accepted, never a query parameter, so tokens do not end
up in access logs, browser history or proxies; the dashboard streams events with ``fetch``
(which can set headers) rather than ``EventSource`` (which cannot).

Every failed authentication (missing or unknown token) counts against the client address;
past the limit the address gets 429 with Retry-After until the window has passed. 403 (known
token, role too low) is not counted: that client is not guessing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crowdsafe.api.context import api_state
from crowdsafe.api.tokens import Role, role_rank

bearer = HTTPBearer(auto_error=False, description="API token from `crowdsafe token create`")


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


def client_address(request: Request) -> str:
    """The peer address; X-Forwarded-For is not trusted, since any client could set it."""
    return request.client.host if request.client else "unknown"


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting tokens of ``role`` or higher."""

    async def dependency(request: Request,
                         credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
                         ) -> Principal:
        state = api_state(request)
        address = client_address(request)
        wait = state.throttle.retry_after(address)
        if wait is not None:
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many failed authentications",
                                headers={"Retry-After": str(wait)})
        entry = state.tokens.verify(credentials.credentials) if credentials else None
        if entry is None:
            state.throttle.failure(address)
            detail = "missing bearer token" if credentials is None else "invalid or revoked token"
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})
        if role_rank(entry.role) < role_rank(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs a {role} token; this one is {entry.role}")
        return Principal(entry.name, entry.role)

    dependency.__name__ = f"require_{role}"
    return dependency


viewer = require("viewer")
operator = require("operator")
admin = require("admin")
