"""Which address a request comes from, believing ``X-Forwarded-For`` only from named proxies.

Behind a reverse proxy every request's TCP peer is the proxy, so counting failures per peer
would lump every client together. The proxy's ``X-Forwarded-For`` names the real client, but
any client can send that header too, so it is read only when the peer is a proxy the operator
listed (``--trusted-proxy``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(specs: Sequence[str]) -> tuple[Network, ...]:
    """Addresses or CIDR networks (``10.0.0.5``, ``10.0.0.0/8``); ValueError names a bad one."""
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ValueError(f"trusted proxy {spec!r} is not an IP address or network") from None
    return tuple(networks)


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(request: Request, trusted: Sequence[Network] = ()) -> str:
    """The address failures are counted against.

    The TCP peer, unless it is a trusted proxy: then walk ``X-Forwarded-For`` from the right
    (each proxy appends the address it received from) and take the first hop that is not a
    trusted proxy. Entries further left were written by the client and prove nothing.
    """
    peer = request.client.host if request.client else "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for v in request.headers.getlist("x-forwarded-for") for h in v.split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _is_trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage from a proxy we trust: count it against the proxy
    return peer
