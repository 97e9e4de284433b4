"""An asyncio policy client for the icmpfwd decision service (icmpfwd.v1.EchoForwarder)."""

from .client import (
    Action,
    AuthError,
    Decision,
    Filter,
    Handler,
    Mode,
    Request,
    Summary,
    SyntheticReply,
    Tls,
    TlsError,
    Verdict,
    run_policy,
    synthetic_reply,
)

__all__ = [
    "Action",
    "AuthError",
    "Decision",
    "Filter",
    "Handler",
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
