"""Where a webhook may go: a public address, or a network the operator allowed.

A ``callback_url`` names a host; the worker would POST there from inside the
deployment, next to MongoDB, Redis and the cloud's metadata service. So its
host is resolved and *every* address it resolves to must be public (not
loopback, private, link-local, multicast, reserved or unspecified; an IPv4
address inside an IPv6 one counts as that IPv4 address) or lie in
``JOBLINE_WEBHOOK_ALLOWED_NETWORKS``. It is checked at submission, for a 422,
and again at delivery, because a name may resolve elsewhere by then; the
delivery then connects to the very address it checked (:func:`pinned`), so
the HTTP client never resolves the name a second time.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from urllib.parse import urlsplit

import cachetools
import httpx

from jobline.core.errors import JoblineError

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

# The well-known NAT64 prefix: the last 32 bits are the IPv4 address reached.
NAT64 = IPv6Network("64:ff9b::/96")
ALLOWED_SETTING = "JOBLINE_WEBHOOK_ALLOWED_NETWORKS"


class ForbiddenDestination(JoblineError):
    """A callback_url whose host is, or resolves to, an address webhooks may not reach."""

    status = 422
    title = "Callback URL not allowed"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.errors = [{"loc": ["callback_url"], "msg": detail, "type": "callback_url_forbidden"}]


class Unresolvable(ForbiddenDestination):
    """A callback_url whose host does not resolve (at submission: refused; at delivery: retried)."""


def _embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4 or NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def off_limits(ip: Address) -> str | None:
    """Why webhooks may not reach ``ip`` ("loopback", "private"…); None for a public address."""
    if isinstance(ip, IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:  # the IPv4 address it carries is where it leads
            kind = off_limits(inner)
            return f"{kind} IPv4 ({inner})" if kind else None
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    # Left over: shared address space (100.64.0.0/10) and other special ranges.
    return None if ip.is_global else "non-public"


def _allowed(ip: Address, networks: tuple[Network, ...]) -> bool:
    candidates: list[Address] = [ip]
    if isinstance(ip, IPv6Address) and (inner := _embedded_ipv4(ip)) is not None:
        candidates.append(inner)
    return any(c in net for c in candidates for net in networks if c.version == net.version)


def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to, in the resolver's order; Unresolvable if none."""
    try:
        return [ipaddress.ip_address(host.split("%", 1)[0])]
    except ValueError:
        pass  # a name (or an IPv4 spelling only the resolver reads, like 127.1)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unresolvable(f"the callback_url host {host!r} does not resolve: {exc}") from None
    found: list[Address] = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    return found


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Destination:
    """A callback URL whose every address was checked, and those addresses."""

    url: str
    host: str
    addresses: tuple[Address, ...]


def check(url: str, networks: tuple[Network, ...]) -> Destination:
    """Resolve the URL's host now; ForbiddenDestination unless every address may be reached."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolve(host, port)
    named = not (len(addresses) == 1 and _is_literal(host))
    for ip in addresses:
        kind = off_limits(ip)
        if kind and not _allowed(ip, networks):
            article = "an" if kind[0] in "aeiou" else "a"
            what = f"resolves to {ip}," if named else "is"
            raise ForbiddenDestination(
                f"the callback_url host {host!r} {what} {article} {kind} address; webhooks go to "
                f"public addresses only, or to networks listed in {ALLOWED_SETTING}"
            )
    return Destination(url, host, tuple(addresses))


# Submissions in a batch (or a burst) often share a receiver: one lookup serves
# them for a few seconds. Deliveries never use it; they resolve afresh.
_recent: cachetools.TTLCache[tuple[str, tuple[Network, ...]], Destination] = cachetools.TTLCache(
    maxsize=1024, ttl=10
)


@cachetools.cached(_recent, lock=threading.Lock())
def check_recent(url: str, networks: tuple[Network, ...]) -> Destination:
    """:func:`check`, reusing an answer of the last few seconds (for submissions)."""
    return check(url, networks)


def pinned(url: str, ip: Address) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """The request for ``url`` sent to ``ip``: its URL, Host header and TLS server name.

    The name stays in the Host header and in TLS (SNI, and the certificate is
    checked against it), so the receiver sees the request it would otherwise.
    """
    original = httpx.URL(url)
    target = original.copy_with(host=str(ip))
    host_header = original.netloc.decode("ascii")
    extensions = {"sni_hostname": original.host} if original.scheme == "https" else {}
    return target, {"Host": host_header}, extensions
