"""Where a webhook may go: the shape of a notify URL, and which addresses it may reach.

A URL is checked twice: its shape when a task is created (and a deployment's at start), its
addresses when it is resolved, at create and again at each delivery, because a name may resolve
elsewhere later. Only public addresses are reached unless the deployment lists the host (or an
address or network) in ``EXPORTER_WEBHOOK_ALLOW_HOSTS``.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

NOTIFY_URL_MAX = 2048
INVALID_NOTIFY_URL = "invalid_notify_url"


def check_notify_url(value: str) -> str:
    """``value`` if it is an absolute http(s) URL with a host and no credentials; ValueError
    saying what is wrong otherwise."""
    if len(value) > NOTIFY_URL_MAX:
        raise ValueError(f"must be at most {NOTIFY_URL_MAX} characters")
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError("must be plain ASCII without spaces (percent-encode the rest)")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ValueError(f"is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (user:password@)")
    if parts.fragment:
        raise ValueError("takes no fragment (#)")
    return value


def _notify_url(value: str) -> str:
    try:
        return check_notify_url(value)
    except ValueError as exc:
        raise PydanticCustomError(INVALID_NOTIFY_URL, str(exc)) from None


NotifyUrl = Annotated[
    str,
    Field(
        max_length=NOTIFY_URL_MAX,
        description="an http(s) URL told of the task's end by a signed POST (README: Webhooks)",
    ),
    AfterValidator(_notify_url),
]

Address = IPv4Address | IPv6Address


def _embedded(address: Address) -> Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo), which is what it reaches."""
    if isinstance(address, IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public(address: Address) -> bool:
    """Whether ``address`` is on the public internet: not loopback, private, link-local (cloud
    metadata: 169.254.169.254), multicast, reserved, unspecified, nor shared or documentation
    space; an IPv6 address carrying an IPv4 one is judged by that one too."""
    inner = _embedded(address)
    if inner is not None and not is_public(inner):
        return False
    return address.is_global and not address.is_multicast


class AddressRefused(Exception):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses webhooks may reach: public ones, and those ``allow`` lists (host names,
    addresses or networks, as ``EXPORTER_WEBHOOK_ALLOW_HOSTS`` gives them)."""

    allow: tuple[str, ...] = ()

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.allow

    def allows(self, address: Address) -> bool:
        if is_public(address):
            return True
        for entry in self.allow:
            try:
                network = ip_network(entry, strict=False)
            except ValueError:
                continue
            if address.version == network.version and address in network:
                return True
        return False


@dataclass(frozen=True)
class Target:
    """A URL's host and port, and the addresses checked for it: what a delivery connects to."""

    host: str
    port: int
    addresses: tuple[str, ...]


async def resolve_target(url: str, policy: AddressPolicy) -> Target:
    """Resolve ``url``'s host once and check every address; AddressRefused if one may not be
    reached (or none is found). OSError when the name does not resolve."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    # Without the zone (fe80::1%eth0): a link-local address is refused anyway, unless listed.
    addresses = tuple(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    if not addresses:
        raise AddressRefused(f"{host} resolves to no address")
    if not policy.allows_host(host):
        refused = [a for a in addresses if not policy.allows(ip_address(a))]
        if refused:
            raise AddressRefused(
                f"{host} resolves to {', '.join(refused)}, which webhooks may not reach"
            )
    return Target(host, port, addresses)
