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
from typing import AsyncIterator, Awaitable, Callable, List, Optional, Sequence, Union

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

MAX_APPLY_TO_FLOW_MS = 2**32 - 1


@dataclass(frozen=True)
class SyntheticReply:
    """After a CONSUME verdict: have the service send an Echo Reply for the request later.

    `delay_ms` is a number, or an awaitable of one (the delay then counts from when it is done).
    `payload` replaces the request's payload when given."""

    delay_ms: Union[float, Awaitable[float]] = 0
    payload: Optional[bytes] = None


@dataclass(frozen=True)
class Verdict:
    """A decision with options: `apply_to_flow_ms` decides the rest of the flow (source,
    destination, ident) for that long without asking; `synthetic_reply` (with consume only)."""

    action: Union[str, Action]
    apply_to_flow_ms: int = 0
    synthetic_reply: Optional[SyntheticReply] = None


Decision = Union[str, Action, Verdict]
Handler = Callable[["Request"], Union[Decision, None, Awaitable[Union[Decision, None]]]]


def synthetic_reply(
    req: "Request", delay_ms: Union[float, Awaitable[float]] = 0, payload: Optional[bytes] = None
) -> Verdict:
    """Consume the request now, and send a SyntheticReply for it after `delay_ms`."""
    return Verdict(Action.CONSUME, synthetic_reply=SyntheticReply(delay_ms=delay_ms, payload=payload))


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
    # The first Hello.payload_bytes of the payload (run_policy(payload_bytes=...); empty by default).
    payload: bytes = b""

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
            payload=bytes(r.payload),
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
    # SyntheticReply messages sent.
    synthetic: int = 0

    def line(self) -> str:
        total = sum(self.verdicts.values())
        by = " ".join(f"{a}={self.verdicts[a]}" for a in ("reply", "consume", "fallthrough"))
        return (
            f"summary: decided={total} {by} observed={self.observed} sessions={self.sessions} "
            f"synthetic={self.synthetic}"
        )


class AuthError(RuntimeError):
    """The service refused the credentials; retrying will not help."""


class TlsError(RuntimeError):
    """The TLS handshake failed (an untrusted server certificate, a refused client certificate
    or a plaintext server); retrying will not help."""


@dataclass(frozen=True)
class Tls:
    """TLS to the service: `ca` (PEM) to trust instead of the system roots; `cert` and `key` (PEM)
    for mTLS (the service's --tls-client-ca); `server_name` overrides the name checked in the
    server certificate (needed for unix: targets)."""

    ca: Optional[bytes] = None
    cert: Optional[bytes] = None
    key: Optional[bytes] = None
    server_name: Optional[str] = None

    @staticmethod
    def from_files(
        ca: Optional[str] = None,
        cert: Optional[str] = None,
        key: Optional[str] = None,
        server_name: Optional[str] = None,
    ) -> "Tls":
        if (cert is None) != (key is None):
            raise ValueError("a client certificate and its key go together (--tls-cert, --tls-key)")

        def read(path: Optional[str]) -> Optional[bytes]:
            if path is None:
                return None
            with open(path, "rb") as f:
                return f.read()

        return Tls(ca=read(ca), cert=read(cert), key=read(key), server_name=server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )

    def options(self) -> List[tuple[str, str]]:
        return [] if self.server_name is None else [("grpc.ssl_target_name_override", self.server_name)]


_TLS_FAILURE = ("handshake", "certificate_verify_failed", "certificate verify failed", "wrong_version_number")


_MAYBE_CERT_REQUIRED = "Endpoint read failed"


def is_tls_failure(details: Optional[str]) -> bool:
    """Whether a gRPC error's details describe a failed TLS handshake."""
    d = (details or "").lower()
    return any(w in d for w in _TLS_FAILURE)


def to_verdict(decision: Union[Decision, None]) -> Verdict:
    """A handler's result as a Verdict with an Action; ValueError when it is not a decision."""
    if isinstance(decision, Verdict):
        action = to_action(decision.action)
        ms = decision.apply_to_flow_ms
        if not isinstance(ms, int) or isinstance(ms, bool) or not 0 <= ms <= MAX_APPLY_TO_FLOW_MS:
            raise ValueError(f"apply_to_flow_ms must be an int in [0, 2**32): {ms!r}")
        if decision.synthetic_reply is not None and action != Action.CONSUME:
            raise ValueError(f"a synthetic reply needs consume, not {action.name.lower()}")
        return Verdict(action, ms, decision.synthetic_reply)
    return Verdict(to_action(decision))


def to_action(decision: Union[Decision, None]) -> Action:
    if isinstance(decision, Action):
        return decision
    if isinstance(decision, str) and decision in _BY_NAME:
        return _BY_NAME[decision]
    raise ValueError(f"not a decision: {decision!r} (want reply, consume, fallthrough or an Action)")


async def decide(handler: Handler, req: Request) -> Verdict:
    """Runs the handler; an exception or a bad return value is a fallthrough and a logged error."""
    try:
        result = handler(req)
        if inspect.isawaitable(result):
            result = await result
        return to_verdict(result)
    except Exception as e:  # noqa: BLE001 - a policy bug must never stall a request
        log.error("handler failed, falling through: %s: %r", req.describe(), e)
        return Verdict(Action.FALLTHROUGH)


class _Session:
    """One Connect stream."""

    def __init__(self, handler: Handler, hello: pb.Hello, summary: Summary) -> None:
        self.handler = handler
        self.hello = hello
        self.summary = summary
        self.outbox: asyncio.Queue[Optional[pb.ClientMessage]] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        self.synthetic: set[asyncio.Task[None]] = set()
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
        decided = await asyncio.gather(*(decide(self.handler, r) for r in reqs))
        verdicts = [
            pb.Verdict(request_id=r.request_id, action=int(v.action), apply_to_flow_ms=v.apply_to_flow_ms)
            for r, v in zip(reqs, decided)
        ]
        for r, v in zip(reqs, decided):
            name = Action(v.action).name.lower()
            self.summary.verdicts[name] += 1
            log.debug("verdict %s: %s", name, r.describe())
        await self.outbox.put(pb.ClientMessage(verdicts=pb.VerdictBatch(verdicts=verdicts)))
        for r, v in zip(reqs, decided):
            if v.synthetic_reply is not None:
                task = asyncio.create_task(self._synthetic_reply(r, v.synthetic_reply))
                self.synthetic.add(task)
                task.add_done_callback(self.synthetic.discard)

    async def _synthetic_reply(self, req: Request, syn: SyntheticReply) -> None:
        """Sends the SyntheticReply after its delay (the verdict went first)."""
        try:
            delay = syn.delay_ms
            if inspect.isawaitable(delay):
                delay = await delay
            await asyncio.sleep(max(0.0, float(delay)) / 1000)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - no reply, but never a crashed session
            log.error("synthetic reply delay failed, no synthetic reply: %s: %r", req.describe(), e)
            return
        msg = pb.SyntheticReply(request_id=req.request_id)
        if syn.payload is not None:
            msg.payload = syn.payload
        self.summary.synthetic += 1
        log.debug("synthetic reply: %s", req.describe())
        await self.outbox.put(pb.ClientMessage(synthetic_reply=msg))

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
            for t in list(self.synthetic):
                t.cancel()
            await self.outbox.put(None)

    async def _drain_on(self, stop: asyncio.Event, call: grpc.aio.StreamStreamCall) -> None:
        await stop.wait()
        # Decide what is in hand (and send the synthetic replies promised), then tell the server:
        # it ends the stream once nothing is in flight.
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)
        if self.synthetic:
            await asyncio.wait(list(self.synthetic), timeout=5)
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
    payload_bytes: int = 0,
    tls: Optional[Tls] = None,
) -> Summary:
    """Connects, decides every request with `handler`, and reconnects (jittered exponential
    backoff) until `stop` is set or SIGINT/SIGTERM arrives; then drains and returns the summary.
    `payload_bytes`: how much of each payload the service sends (Request.payload). `tls`: TLS
    (and mTLS) instead of plaintext. Raises AuthError when the service refuses the credentials,
    TlsError when the TLS handshake fails."""
    stop = stop or asyncio.Event()
    _install_signals(stop)
    hello = pb.Hello(
        protocol_version=1,
        client_name=name,
        mode=int(mode),
        filter=(filter or Filter()).to_proto(),
        max_in_flight=max_in_flight,
        payload_bytes=payload_bytes,
    )
    metadata = [("authorization", f"Bearer {token}")] if token else []
    summary = Summary()
    attempt = 0
    while not stop.is_set():
        session = _Session(handler, hello, summary)
        channel = (
            grpc.aio.insecure_channel(target)
            if tls is None
            else grpc.aio.secure_channel(target, tls.credentials(), options=tls.options())
        )
        async with channel:
            try:
                await session.run(pb_grpc.EchoForwarderStub(channel), metadata, stop)
                log.info("stream ended")
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.CANCELLED and stop.is_set():
                    break
                if e.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    raise AuthError(f"{target} refused the client: {e.code().name}: {e.details()}") from e
                if tls is not None and is_tls_failure(e.details()):
                    raise TlsError(
                        f"TLS handshake with {target} failed (check --tls-ca, --tls-cert/--tls-key, "
                        f"--tls-server-name): {e.details()}"
                    ) from e
                log.warning("connection to %s failed: %s: %s", target, e.code().name, e.details())
                if tls is not None and tls.cert is None and not session.welcomed and _MAYBE_CERT_REQUIRED in (e.details() or ""):
                    # A refused client certificate shows only in grpc's own log ("alert certificate
                    # required"), never in the status: a hint, and keep retrying.
                    log.warning("the service may require a client certificate (mTLS): pass --tls-cert and --tls-key")
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
