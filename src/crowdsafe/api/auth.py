"""Bearer-token authentication and role checks, as FastAPI dependencies.

Tokens are read from the Authorization header only (never a query: logs keep them); failed
logins are throttled per client, and a valid token always passes.

Why and how: docs/design-notes.md, ``crowdsafe.api.auth``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crowdsafe.api.context import api_state
from crowdsafe.api.proxies import client_address
from crowdsafe.api.tokens import Role, role_rank

bearer = HTTPBearer(auto_error=False, description="API token from `crowdsafe token create`")


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting tokens of ``role`` or higher."""

    async def dependency(request: Request,
                         credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
                         ) -> Principal:
        state = api_state(request)
        entry = state.tokens.verify(credentials.credentials) if credentials else None
        if entry is None:
            address = client_address(request, state.trusted_proxies)
            wait = state.throttle.retry_after(address)
            if wait is not None:
                raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many failed authentications",
                                    headers={"Retry-After": str(wait)})
            state.throttle.failure(address)
            detail = "missing bearer token" if credentials is None else "invalid or revoked token"
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})
        if role_rank(entry.role) < role_rank(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"needs {_article(role)} {role} token; this one is {entry.role}")
        return Principal(entry.name, entry.role)

    dependency.__name__ = f"require_{role}"
    return dependency


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


viewer = require("viewer")
operator = require("operator")
admin = require("admin")
