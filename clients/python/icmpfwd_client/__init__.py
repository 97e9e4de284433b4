"""An asyncio policy client for the icmpfwd decision service (icmpfwd.v1.EchoForwarder)."""

from .client import Action, Decision, Filter, Handler, Mode, Request, Summary, run_policy

__all__ = ["Action", "Decision", "Filter", "Handler", "Mode", "Request", "Summary", "run_policy"]
