"""The target list of docs/cli-contract.md: comma-separated `host:port`, `[v6]:port`,
`unix:/path` (one service each) and `dns:///name:port` (every A/AAAA address of name, one service
each, re-resolved)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Awaitable, Callable, List, Optional

# Resolves a name to its addresses (strings); the default asks the system (A and AAAA).
Resolver = Callable[[str], Awaitable[List[str]]]


@dataclass(frozen=True)
class DnsTarget:
    """`dns:///name:port`: one service per address `name` resolves to."""

    name: str
    port: int

    def address(self, ip: str) -> str:
        """The gRPC target of one resolved address."""
        return f"[{ip}]:{self.port}" if ":" in ip else f"{ip}:{self.port}"


# A single service: the gRPC target string as given.
Target = str


def parse_targets(spec: str) -> List[object]:
    """Splits a target list; ValueError names the first bad element."""
    out: List[object] = []
    for raw in spec.split(","):
        t = raw.strip()
        if t == "":
            raise ValueError(f"bad target list {spec!r}: an empty element")
        if t.startswith("dns:"):
            out.append(_dns(t))
        elif t.startswith("unix:"):
            if len(t) == len("unix:"):
                raise ValueError(f"bad target {t!r}: unix: needs a path")
            out.append(t)
        else:
            _host_port(t)
            out.append(t)
    return out


def _dns(t: str) -> DnsTarget:
    if not t.startswith("dns:///"):
        raise ValueError(f"bad target {t!r}: want dns:///name:port")
    host, port = _host_port(t[len("dns:///") :])
    return DnsTarget(host, port)


def _host_port(t: str) -> tuple[str, int]:
    if t.startswith("["):
        end = t.find("]")
        if end < 0 or t[end + 1 : end + 2] != ":":
            raise ValueError(f"bad target {t!r}: want [v6addr]:port")
        host, port = t[1:end], t[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad target {t!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port = t.rpartition(":")
        if not sep or host == "" or ":" in host:
            raise ValueError(f"bad target {t!r}: want host:port, [v6addr]:port, unix:/path or dns:///name:port")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad target {t!r}: bad port {port!r}")
    return host, int(port)


def host_of(target: str) -> Optional[str]:
    """The host of a `host:port` / `[v6]:port` target (None for unix:)."""
    if target.startswith("unix:"):
        return None
    return _host_port(target)[0]


async def system_resolver(name: str) -> List[str]:
    """Every A and AAAA address of `name`, in the order the system returns them, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
    seen: List[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = str(sockaddr[0])
        if ip not in seen:
            seen.append(ip)
    return seen
