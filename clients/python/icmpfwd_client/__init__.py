"""An asyncio policy client for the icmpfwd decision service (icmpfwd.v1.EchoForwarder).

The names load on first use (PEP 562), so that a Python without grpcio gets one line naming the
remedies (deps.py) rather than a ModuleNotFoundError from deep inside the package."""

from __future__ import annotations

from typing import Any

__all__ = [
    "Action",
    "AuthError",
    "Decision",
    "Filter",
    "Handler",
    "HelloRejected",
    "Mode",
    "Request",
    "Summary",
    "SyntheticReply",
    "Tls",
    "TlsError",
    "Verdict",
    "run_policy",
    "synthetic_reply",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'icmpfwd_client' has no attribute {name!r}")
    from . import deps

    deps.require()
    from . import client

    return getattr(client, name)
