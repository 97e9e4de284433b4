"""The Connect session: Hello, batches of requests in, one VerdictBatch out per batch."""

from __future__ import annotations

import asyncio
import enum
import inspect
import ipaddress
import logging
import random
import signal
from collections import Counter
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable, Optional, Sequence, Union

import grpc
import grpc.aio

from .gen import forwarder_pb2 as pb
from .gen import forwarder_pb2_grpc as pb_grpc

log = logging.getLogger("icmpfwd_client")


class Action(enum.IntEnum):
    CONSUME = pb.ACTION_CONSUME
    REPLY = pb.ACTION_REPLY
    FALLTHROUGH = pb.ACTION_FALLTHROUGH


class Mode(enum.IntEnum):
    DECIDE = pb.MODE_DECIDE
    OBSERVE = pb.MODE_OBSERVE


_BY_NAME = {"reply": Action.REPLY, "consume": Action.CONSUME, "fallthrough": Action.FALLTHROUGH}

Decision = Union[str, Action]
Handler = Callable[["Request"], Union[Decision, None, Awaitable[Union[Decision, None]]]]


@dataclass(frozen=True)
class Request:
    """One Echo Request the service's netstack received."""

    request_id: int
    source: str
    destination: str
    ident: int
    sequence: int
    ttl: int
    tos: int
    temporary: bool
    payload_length: int
    traceparent: str = ""

    @property
    def trace_id(self) -> Optional[str]:
        """The trace id of a W3C traceparent (version-traceid-spanid-flags), when present."""
        parts = self.traceparent.split("-")
        return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None

    @property
    def ipv6(self) -> bool:
        return ":" in self.source

    @staticmethod
    def from_proto(r: pb.EchoRequest) -> Request:
        return Request(
            request_id=r.request_id,
            source=str(ipaddress.ip_address(r.source)),
            destination=str(ipaddress.ip_address(r.destination)),
            ident=r.ident,
            sequence=r.sequence,
            ttl=r.ttl,
            tos=r.tos,
            temporary=r.local_address_temporary,
            payload_length=r.payload_length,
            traceparent=r.traceparent,
        )

    def describe(self) -> str:
        trace = f" trace_id={self.trace_id}" if self.trace_id else ""
        return (
            f"request={self.request_id} {self.source} > {self.destination} "
            f"ident={self.ident} seq={self.sequence}{trace}"
        )


@dataclass
class Filter:
    """Which requests the session receives; empty lists match everything."""

    family: int = 0  # 0 both, 4 or 6
    source_prefixes: Sequence[str] = ()
    destination_prefixes: Sequence[str] = ()
    temporary_only: bool = False

    def to_proto(self) -> pb.Filter:
        family = {0: pb.FAMILY_UNSPECIFIED, 4: pb.FAMILY_IPV4, 6: pb.FAMILY_IPV6}[self.family]
        return pb.Filter(
            family=family,
            source_prefixes=list(self.source_prefixes),
            destination_prefixes=list(self.destination_prefixes),
            temporary_only=self.temporary_only,
        )


@dataclass
class Summary:
    """What the client decided (or observed) over its lifetime."""

    verdicts: Counter[str] = field(default_factory=Counter)
    observed: int = 0
    sessions: int = 0

    def line(self) -> str:
        total = sum(self.verdicts.values())
        by = " ".join(f"{a}={self.verdicts[a]}" for a in ("reply", "consume", "fallthrough"))
        return f"summary: decided={total} {by} observed={self.observed} sessions={self.sessions}"


class AuthError(RuntimeError):
    """The service refused the credentials; retrying will not help."""


def to_action(decision: Union[Decision, None]) -> Action:
    if isinstance(decision, Action):
        return decision
    if isinstance(decision, str) and decision in _BY_NAME:
        return _BY_NAME[decision]
    raise ValueError(f"not a decision: {decision!r} (want reply, consume, fallthrough or an Action)")


async def decide(handler: Handler, req: Request) -> Action:
    """Runs the handler; an exception or a bad return value is a fallthrough and a logged error."""
    try:
        result = handler(req)
        if inspect.isawaitable(result):
            result = await result
        return to_action(result)
    except Exception as e:  # noqa: BLE001 - a policy bug must never stall a request
        log.error("handler failed, falling through: %s: %r", req.describe(), e)
        return Action.FALLTHROUGH


class _Session:
    """One Connect stream."""

    def __init__(self, handler: Handler, hello: pb.Hello, summary: Summary) -> None:
        self.handler = handler
        self.hello = hello
        self.summary = summary
        self.outbox: asyncio.Queue[Optional[pb.ClientMessage]] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        self.welcomed = False

    async def _outgoing(self) -> AsyncIterator[pb.ClientMessage]:
        yield pb.ClientMessage(hello=self.hello)
        while (msg := await self.outbox.get()) is not None:
            yield msg

    async def _decide_batch(self, batch: pb.EchoRequestBatch) -> None:
        reqs = [Request.from_proto(r) for r in batch.requests]
        if self.hello.mode == pb.MODE_OBSERVE:
            if batch.observer_drops:
                log.warning("observer lost %d copies", batch.observer_drops)
            for req in reqs:
                self.summary.observed += 1
                await decide(self.handler, req)
            return
        actions = await asyncio.gather(*(decide(self.handler, r) for r in reqs))
        verdicts = [pb.Verdict(request_id=r.request_id, action=int(a)) for r, a in zip(reqs, actions)]
        for r, a in zip(reqs, actions):
            self.summary.verdicts[a.name.lower()] += 1
            log.debug("verdict %s: %s", a.name.lower(), r.describe())
        await self.outbox.put(pb.ClientMessage(verdicts=pb.VerdictBatch(verdicts=verdicts)))

    async def run(self, stub: pb_grpc.EchoForwarderStub, metadata: Sequence[tuple[str, str]], stop: asyncio.Event) -> None:
        call = stub.Connect(self._outgoing(), metadata=tuple(metadata))
        stopper = asyncio.create_task(self._drain_on(stop, call))
        try:
            async for msg in call:
                kind = msg.WhichOneof("message")
                if kind == "welcome":
                    self.welcomed = True
                    self.summary.sessions += 1
                    w = msg.welcome
                    log.info(
                        "welcome: session=%s max_in_flight=%d deadline=%.3fs",
                        w.session_id, w.max_in_flight, w.deadline.ToTimedelta().total_seconds(),
                    )
                elif kind == "requests":
                    task = asyncio.create_task(self._decide_batch(msg.requests))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                elif kind == "rejection":
                    rj = msg.rejection
                    log.warning(
                        "rejected: request=%d %s: %s",
                        rj.request_id, pb.RejectionReason.Name(rj.reason), rj.message,
                    )
                elif kind == "draining":
                    log.info("the server is draining")
        finally:
            stopper.cancel()
            await self.outbox.put(None)

    async def _drain_on(self, stop: asyncio.Event, call: grpc.aio.StreamStreamCall) -> None:
        await stop.wait()
        # Decide what is in hand, then tell the server: it ends the stream once nothing is in flight.
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)
        log.info("draining")
        await self.outbox.put(pb.ClientMessage(drain=pb.Drain()))
        await asyncio.sleep(5)
        log.warning("the server did not end the stream after Drain; cancelling")
        call.cancel()


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or no signal support


async def run_policy(
    handler: Handler,
    target: str = "127.0.0.1:50051",
    name: str = "icmpfwd-python",
    token: Optional[str] = None,
    filter: Optional[Filter] = None,
    max_in_flight: int = 0,
    mode: Mode = Mode.DECIDE,
    stop: Optional[asyncio.Event] = None,
    backoff_s: tuple[float, float] = (0.1, 5.0),
) -> Summary:
    """Connects, decides every request with `handler`, and reconnects (jittered exponential
    backoff) until `stop` is set or SIGINT/SIGTERM arrives; then drains and returns the summary.
    Raises AuthError when the service refuses the credentials."""
    stop = stop or asyncio.Event()
    _install_signals(stop)
    hello = pb.Hello(
        protocol_version=1,
        client_name=name,
        mode=int(mode),
        filter=(filter or Filter()).to_proto(),
        max_in_flight=max_in_flight,
    )
    metadata = [("authorization", f"Bearer {token}")] if token else []
    summary = Summary()
    attempt = 0
    while not stop.is_set():
        session = _Session(handler, hello, summary)
        async with grpc.aio.insecure_channel(target) as channel:
            try:
                await session.run(pb_grpc.EchoForwarderStub(channel), metadata, stop)
                log.info("stream ended")
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.CANCELLED and stop.is_set():
                    break
                if e.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    raise AuthError(f"{target} refused the client: {e.code().name}: {e.details()}") from e
                log.warning("connection to %s failed: %s: %s", target, e.code().name, e.details())
        if session.welcomed:
            attempt = 0
        if stop.is_set():
            break
        base, cap = backoff_s
        delay = min(cap, base * 2**attempt) * random.uniform(0.5, 1.0)
        attempt += 1
        log.info("reconnecting in %.2fs", delay)
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except asyncio.TimeoutError:
            pass
    return summary
