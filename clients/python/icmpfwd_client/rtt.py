"""The measured-RTT mode of proxy-latency: the client host runs the system `ping` (iputils) to a
destination, and the policy sends its synthetic reply after that round trip. Never through the
service's own Ping RPC, which would loop back into the service.

- One measurement per destination at a time (concurrent requests share it); results and failures
  are cached for `cache_ms`; at most `max_concurrent` pings run at once and `max_queued` wait,
  past that a request gets the fallback at once.
- A failed ping (no reply, no route, no `ping`) yields None: the policy falls back to its fixed
  delay.
- Loop guard: every measurement ping carries MEASUREMENT_MARKER in its payload (`ping -p`). If the
  route to a destination goes through icmpfwd itself, that ping reaches the policy as a request;
  the policy sees the marker, calls `looped(destination)` (the result is discarded, cached as a
  failure and logged) and answers that ping with the built-in reply, so nothing recurses.

The same behaviour, flags and marker as the TypeScript client (clients/ts/src/rtt.ts).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Awaitable, Callable, Dict, List, Optional, Set, Tuple

log = logging.getLogger("icmpfwd_client.rtt")

MEASUREMENT_MARKER = b"icmpfwd rtt ping"  # 16 bytes: iputils' longest -p pattern

PingRunner = Callable[[List[str]], Awaitable[Tuple[int, str, str]]]


def is_measurement_ping(payload: bytes) -> bool:
    """Whether an Echo Request's payload carries MEASUREMENT_MARKER (a looped measurement ping)."""
    return MEASUREMENT_MARKER in payload


_TIME = re.compile(r"time[=<]\s*([\d.]+)\s*ms")
_SUMMARY = re.compile(r"= ([\d.]+)/[\d.]+/[\d.]+")


def parse_ping_rtt(output: str) -> Optional[float]:
    """The round trip `ping -c 1` printed, in milliseconds, or None."""
    m = _TIME.search(output) or _SUMMARY.search(output)
    if m is None:
        return None
    try:
        return float(m.group(1))
    except ValueError:
        return None


def system_ping(command: str = "ping", timeout_s: float = 5.0) -> PingRunner:
    """Runs the system `ping` (from PATH, or `command`): (exit status, stdout, stderr)."""

    async def run(args: List[str]) -> Tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            command, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            return -1, "", f"ping took more than {timeout_s}s"
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    return run


@dataclass
class RttStats:
    pings: int = 0  # pings started
    shared: int = 0  # answered from the cache or by joining a measurement in flight
    failures: int = 0
    loops: int = 0
    overflows: int = 0  # refused because the queue was full


class RttMeter:
    def __init__(
        self,
        cache_ms: float = 5000,
        max_concurrent: int = 4,
        max_queued: int = 256,
        timeout_s: int = 1,
        run: Optional[PingRunner] = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache_ms = cache_ms
        self.max_queued = max_queued
        self.timeout_s = max(1, int(timeout_s))
        self.run = run or system_ping()
        self.now = now
        self.stats = RttStats()
        self._max_concurrent = max(1, max_concurrent)
        self._slots: Optional[asyncio.Semaphore] = None
        self._running = 0
        self._queued = 0
        self._cache: "OrderedDict[str, Tuple[Optional[float], float]]" = OrderedDict()
        self._in_flight: Dict[str, "asyncio.Future[Optional[float]]"] = {}
        self._looped: Set[str] = set()

    def args(self, destination: str) -> List[str]:
        """The `ping` arguments of one measurement of `destination`."""
        family = "-6" if ipaddress.ip_address(destination).version == 6 else "-4"
        return [family, "-c", "1", "-n", "-W", str(self.timeout_s), "-p", MEASUREMENT_MARKER.hex(), destination]

    def looped(self, destination: str) -> None:
        """A measurement ping to `destination` came back into the service: discard its result."""
        self._looped.add(destination)

    async def measure(self, destination: str) -> Optional[float]:
        """The RTT to `destination` in ms (cached, shared or measured now), or None when unknown."""
        cached = self._cache.get(destination)
        if cached is not None and (self.now() - cached[1]) * 1000 < self.cache_ms:
            self.stats.shared += 1
            return cached[0]
        pending = self._in_flight.get(destination)
        if pending is not None:
            self.stats.shared += 1
            return await asyncio.shield(pending)
        if self._running >= self._max_concurrent and self._queued >= self.max_queued:
            self.stats.overflows += 1
            return None
        fut: "asyncio.Future[Optional[float]]" = asyncio.get_running_loop().create_future()
        self._in_flight[destination] = fut
        try:
            rtt = await self._ping(destination)
            fut.set_result(rtt)
            return rtt
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody shared it
            raise
        finally:
            del self._in_flight[destination]

    async def _ping(self, destination: str) -> Optional[float]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_concurrent)
        self._queued += 1
        try:
            await self._slots.acquire()
        finally:
            self._queued -= 1
        self._running += 1
        self.stats.pings += 1
        self._looped.discard(destination)
        error = ""
        try:
            code, out, err = await self.run(self.args(destination))
            rtt = parse_ping_rtt(out) if code == 0 else None
            if rtt is None:
                lines = (err.strip() or out.strip()).splitlines()
                error = lines[-1] if lines else f"exit status {code}"
        except OSError as e:
            rtt, error = None, str(e)
        finally:
            self._running -= 1
            self._slots.release()
        if destination in self._looped:
            self._looped.discard(destination)
            self.stats.loops += 1
            log.warning(
                "the measurement ping to %s went through icmpfwd itself (a routing loop); using the fixed delay",
                destination,
            )
            rtt = None
        elif rtt is None:
            self.stats.failures += 1
            log.warning("measurement ping to %s failed; using the fixed delay: %s", destination, error)
        else:
            log.info("measured rtt to %s: %.3f ms", destination, rtt)
        self._cache[destination] = (rtt, self.now())
        self._cache.move_to_end(destination)
        if len(self._cache) > 4096:
            self._cache.popitem(last=False)
        return rtt
