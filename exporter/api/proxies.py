"""Requests through trusted reverse proxies: the client's address and scheme from X-Forwarded-*.

Only a peer in ``EXPORTER_TRUSTED_PROXIES`` may say who the client is and whether it came over
https; from anyone else the headers are ignored, or a client could name any address (and step
around the sign-in limits) or claim https.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware

ProxyNetworks = Sequence[IPv4Network | IPv6Network]

# Set on the request as the server received it, which is the one the access log is given.
CLIENT_ADDRESS = web.RequestKey("client_address", str)
SCHEMES = frozenset({"http", "https"})


def _is_proxy(address: str | None, proxies: ProxyNetworks) -> bool:
    if address is None:
        return False
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(forwarded_for: str, peer: str, proxies: ProxyNetworks) -> str:
    """The nearest address of the chain that is not a trusted proxy (the peer is one).

    Each proxy appends the address it was connected from, so the entries right of the client
    were written by trusted proxies and those left of it by the client, who can write anything.
    """
    address = peer
    for hop in reversed(forwarded_for.split(",")):
        if not _is_proxy(address, proxies):
            break
        try:
            address = str(ip_address(hop.strip()))
        except ValueError:
            break
    return address


def forwarded_scheme(forwarded_proto: str) -> str | None:
    """The scheme the nearest proxy reports (the last value), if it is one we know."""
    scheme = forwarded_proto.rpartition(",")[2].strip().lower()
    return scheme if scheme in SCHEMES else None


def trusted_proxies_middleware(proxies: ProxyNetworks) -> Middleware:
    """Requests from a trusted proxy get the client's address and scheme it forwards."""

    @web.middleware
    async def from_trusted_proxies(request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = request.remote
        if peer is None or not _is_proxy(peer, proxies):
            return await handler(request)
        headers = request.headers
        remote = client_address(",".join(headers.getall("X-Forwarded-For", [])), peer, proxies)
        request[CLIENT_ADDRESS] = remote
        scheme = forwarded_scheme(",".join(headers.getall("X-Forwarded-Proto", [])))
        return await handler(request.clone(remote=remote, scheme=scheme or request.scheme))

    return from_trusted_proxies


class ClientAccessLogger(AbstractAccessLogger):
    """One line per answer: client, request line, status, size, seconds taken, user agent.

    The client is the one a trusted proxy forwarded, else the peer. The line has its own time
    stamp, so the request's is not formatted a second time; the size is the Content-Length
    header, since aiohttp's %b logged 0 for every JSON answer.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %s %f "%s"',
            request.get(CLIENT_ADDRESS) or request.remote or "-",
            request.method,
            request.path_qs,
            request.version.major,
            request.version.minor,
            response.status,
            response.headers.get("Content-Length", "-"),
            time,
            request.headers.get("User-Agent", "-"),
        )
