"""Bearer-token authentication and role checks, as FastAPI dependencies.

Roles are ordered: viewer (read) < operator (acknowledge alerts) < admin (site changes). Only
the ``Authorization: Bearer`` header is accepted, never a query parameter, so tokens do not end
up in access logs, browser history or proxies; the dashboard streams events with ``fetch``
(which can set headers) rather than ``EventSource`` (which cannot).

Every failed authentication (missing or unknown token) counts against the client address;
past the limit that address's failing requests get 429 with Retry-After until the window has
passed. A valid token always passes, throttled address or not: the throttle exists to slow
guessing and scanners, and an unauthenticated flood from a shared address (every client behind
one reverse proxy, a NAT, the dashboard's own host) must never blank an operator's screen.
Guessing gains nothing from that, since tokens carry 256 bits. 403 (known token, role too low)
is not counted: that client is not guessing.

The client address is the TCP peer, unless the peer is a proxy named in ``trusted_proxies``:
then it is the nearest ``X-Forwarded-For`` entry not itself a trusted proxy. Any client can
write that header, so it is believed only from the proxies the operator configured.
"""

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
