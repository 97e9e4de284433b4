"""The example policies of `python3 -m icmpfwd_client`."""

from __future__ import annotations

import logging
import time
from typing import Callable, Dict, Optional, Tuple

from .client import Decision, Request, synthetic_reply
from .rtt import RttMeter, is_measurement_ping

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


class TokenBuckets:
    """A token bucket per key: `take(key)` is True while the key has a token. Each bucket starts
    full (`burst` tokens) and refills at `rate` tokens per second (0: never)."""

    MAX_KEYS = 65536

    def __init__(self, rate: float, burst: float, now: Callable[[], float] = time.monotonic) -> None:
        if rate < 0 or burst < 0:
            raise ValueError("rate and burst must be >= 0")
        self.rate = rate
        self.burst = burst
        self.now = now
        self._buckets: Dict[str, Tuple[float, float]] = {}

    def take(self, key: str) -> bool:
        t = self.now()
        tokens, at = self._buckets.get(key, (self.burst, t))
        tokens = min(self.burst, tokens + (t - at) * self.rate)
        ok = tokens >= 1
        self._buckets[key] = (tokens - 1 if ok else tokens, t)
        if len(self._buckets) > self.MAX_KEYS:
            del self._buckets[next(iter(self._buckets))]
        return ok


def per_source_rate_limit(
    rate: float, burst: float, now: Callable[[], float] = time.monotonic
) -> Callable[[Request], Decision]:
    """Replies while the request's source has a token (a bucket per source address), else
    consumes."""
    buckets = TokenBuckets(rate, burst, now)

    def policy(req: Request) -> Decision:
        return "reply" if buckets.take(req.source) else "consume"

    return policy


# Hello.payload_bytes proxy-latency --measure asks for: enough to hold the loop marker.
MEASURE_PAYLOAD_BYTES = 64


def proxy_latency(
    delay_ms: float = 100,
    meter: Optional[RttMeter] = None,
    now: Callable[[], float] = time.monotonic,
) -> Callable[[Request], Decision]:
    """Consumes, then a synthetic reply after `delay_ms`; with a `meter`, after the RTT that this
    host's `ping` measures to the request's destination (counted from the request's arrival), and
    after `delay_ms` when that measurement fails. Its own measurement pings, if they come back
    through icmpfwd, get the built-in reply."""
    if delay_ms < 0:
        raise ValueError("delay_ms must be >= 0")
    if meter is None:
        return lambda req: synthetic_reply(req, delay_ms=delay_ms)
    m = meter

    async def after_rtt(destination: str, t0: float) -> float:
        rtt = await m.measure(destination)
        return max(0.0, (delay_ms if rtt is None else rtt) - (now() - t0) * 1000)

    def policy(req: Request) -> Decision:
        if is_measurement_ping(req.payload):
            m.looped(req.destination)
            return "reply"
        return synthetic_reply(req, delay_ms=after_rtt(req.destination, now()))

    return policy


def observe_log(req: Request) -> None:
    log.info("observed %s ttl=%d len=%d", req.describe(), req.ttl, req.payload_length, extra=req.fields())


SIMPLE: Dict[str, Callable[[Request], object]] = {
    "reply-all": reply_all,
    "drop-all": drop_all,
    "even-reply": even_reply,
    "observe-log": observe_log,
}
