"""The example policies of `python3 -m icmpfwd_client`."""

from __future__ import annotations

import logging
from typing import Callable, Dict

from .client import Decision, Request

log = logging.getLogger("icmpfwd_client.policy")


def reply_all(req: Request) -> Decision:
    return "reply"


def drop_all(req: Request) -> Decision:
    return "consume"


def even_reply(req: Request) -> Decision:
    """Replies to even sequence numbers and consumes odd ones."""
    return "reply" if req.sequence % 2 == 0 else "consume"


def every_nth(n: int) -> Callable[[Request], Decision]:
    """Replies to every n-th request (by arrival) and consumes the rest."""
    if n < 1:
        raise ValueError("every-nth needs N >= 1")
    seen = 0

    def policy(req: Request) -> Decision:
        nonlocal seen
        seen += 1
        return "reply" if seen % n == 0 else "consume"

    return policy


def observe_log(req: Request) -> None:
    log.info("observed %s ttl=%d len=%d", req.describe(), req.ttl, req.payload_length)


SIMPLE: Dict[str, Callable[[Request], object]] = {
    "reply-all": reply_all,
    "drop-all": drop_all,
    "even-reply": even_reply,
    "observe-log": observe_log,
}
