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
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional, Sequence, Union

import grpc
import grpc.aio

from .gen import forwarder_pb2 as pb
from .gen import forwarder_pb2_grpc as pb_grpc
from .targets import DnsTarget, Resolver, parse_targets, system_resolver

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

    def fields(self) -> Dict[str, Any]:
        """The log fields of a line about this request (`trace_id` when the service traces it)."""
        return {"request_id": self.request_id, "trace_id": self.trace_id}

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
    # Handler failures and bad return values (each decided fallthrough).
    errors: int = 0
    observed: int = 0
    # Welcomes, over every service and reconnect.
    sessions: int = 0
    # SyntheticReply messages sent.
    synthetic: int = 0

    def line(self, policy: str = "custom") -> str:
        """The stdout summary line of docs/cli-contract.md."""
        total = sum(self.verdicts.values())
        by = " ".join(f"{a}={self.verdicts[a]}" for a in ("reply", "consume", "fallthrough"))
        return (
            f"summary policy={policy} decided={total} {by} errors={self.errors} "
            f"observed={self.observed} sessions={self.sessions}"
        )


class AuthError(RuntimeError):
    """The service refused the credentials; retrying will not help."""


class HelloRejected(RuntimeError):
    """The service refused the Hello (INVALID_ARGUMENT, FAILED_PRECONDITION, UNIMPLEMENTED);
    retrying will not help."""


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


async def decide(handler: Handler, req: Request, summary: Optional[Summary] = None, **fields: Any) -> Verdict:
    """Runs the handler; an exception or a bad return value is a fallthrough and a logged error
    (counted in `summary.errors`)."""
    try:
        result = handler(req)
        if inspect.isawaitable(result):
            result = await result
        return to_verdict(result)
    except Exception as e:  # noqa: BLE001 - a policy bug must never stall a request
        if summary is not None:
            summary.errors += 1
        log.error("handler failed, falling through: %s: %r", req.describe(), e, extra={**fields, **req.fields()})
        return Verdict(Action.FALLTHROUGH)


class _Session:
    """One Connect stream to one service."""

    def __init__(self, handler: Handler, hello: pb.Hello, summary: Summary, target: str) -> None:
        self.handler = handler
        self.hello = hello
        self.summary = summary
        self.target = target
        self.session_id = ""
        self.outbox: asyncio.Queue[Optional[pb.ClientMessage]] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        self.synthetic: set[asyncio.Task[None]] = set()
        self.welcomed = False

    def fields(self, req: Optional[Request] = None) -> Dict[str, Any]:
        """The log fields of a line about this session (and one of its requests)."""
        f: Dict[str, Any] = {"target": self.target, "session": self.session_id or None}
        return f if req is None else {**f, **req.fields()}

    async def _outgoing(self) -> AsyncIterator[pb.ClientMessage]:
        yield pb.ClientMessage(hello=self.hello)
        while (msg := await self.outbox.get()) is not None:
            yield msg

    async def _decide_batch(self, batch: pb.EchoRequestBatch) -> None:
        reqs = [Request.from_proto(r) for r in batch.requests]
        if self.hello.mode == pb.MODE_OBSERVE:
            if batch.observer_drops:
                log.warning("observer lost %d copies", batch.observer_drops, extra=self.fields())
            for req in reqs:
                self.summary.observed += 1
                await decide(self.handler, req, self.summary, **self.fields())
            return
        decided = await asyncio.gather(*(decide(self.handler, r, self.summary, **self.fields()) for r in reqs))
        verdicts = [
            pb.Verdict(request_id=r.request_id, action=int(v.action), apply_to_flow_ms=v.apply_to_flow_ms)
            for r, v in zip(reqs, decided)
        ]
        for r, v in zip(reqs, decided):
            name = Action(v.action).name.lower()
            self.summary.verdicts[name] += 1
            log.debug("verdict %s: %s", name, r.describe(), extra=self.fields(r))
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
            log.error(
                "synthetic reply delay failed, no synthetic reply: %s: %r", req.describe(), e, extra=self.fields(req)
            )
            return
        msg = pb.SyntheticReply(request_id=req.request_id)
        if syn.payload is not None:
            msg.payload = syn.payload
        self.summary.synthetic += 1
        log.debug("synthetic reply: %s", req.describe(), extra=self.fields(req))
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
                    self.session_id = w.session_id
                    log.info(
                        "welcome: session=%s max_in_flight=%d deadline=%.3fs",
                        w.session_id, w.max_in_flight, w.deadline.ToTimedelta().total_seconds(),
                        extra=self.fields(),
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
                        extra={**self.fields(), "request_id": rj.request_id},
                    )
                elif kind == "draining":
                    log.info("the service is draining", extra=self.fields())
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
        log.info("draining", extra=self.fields())
        await self.outbox.put(pb.ClientMessage(drain=pb.Drain()))
        await asyncio.sleep(5)
        log.warning("the service did not end the stream after Drain; cancelling", extra=self.fields())
        call.cancel()


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or no signal support


# Statuses that reconnecting cannot fix: the service refused the Hello.
_HELLO_REFUSED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNIMPLEMENTED)


@dataclass
class _Connection:
    """What every session of a run shares: the Hello, the credentials, the summary."""

    handler: Handler
    hello: pb.Hello
    metadata: List[tuple[str, str]]
    summary: Summary
    tls: Optional[Tls]
    backoff_s: tuple[float, float]

    def channel(self, target: str, server_name: Optional[str]) -> grpc.aio.Channel:
        if self.tls is None:
            return grpc.aio.insecure_channel(target)
        tls = self.tls
        if tls.server_name is None and server_name is not None:
            tls = Tls(ca=tls.ca, cert=tls.cert, key=tls.key, server_name=server_name)
        return grpc.aio.secure_channel(target, tls.credentials(), options=tls.options())

    async def serve(self, target: str, stop: asyncio.Event, server_name: Optional[str] = None) -> None:
        """One service: sessions, reconnecting with jittered exponential backoff, until `stop`.
        Raises AuthError, HelloRejected or TlsError when retrying cannot help."""
        attempt = 0
        at = {"target": target}
        while not stop.is_set():
            session = _Session(self.handler, self.hello, self.summary, target)
            async with self.channel(target, server_name) as channel:
                try:
                    await session.run(pb_grpc.EchoForwarderStub(channel), self.metadata, stop)
                    log.info("stream ended", extra=session.fields())
                except grpc.aio.AioRpcError as e:
                    code, details = e.code(), e.details()
                    if code == grpc.StatusCode.CANCELLED and stop.is_set():
                        break
                    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                        raise AuthError(f"{target} refused the credentials: {code.name}: {details}") from e
                    if code in _HELLO_REFUSED:
                        raise HelloRejected(f"{target} refused the Hello: {code.name}: {details}") from e
                    if self.tls is not None and is_tls_failure(details):
                        raise TlsError(
                            f"TLS handshake with {target} failed (check --tls-ca, --tls-cert/--tls-key, "
                            f"--tls-server-name): {details}"
                        ) from e
                    log.warning("connection failed: %s: %s", code.name, details, extra=at)
                    if (
                        self.tls is not None
                        and self.tls.cert is None
                        and not session.welcomed
                        and _MAYBE_CERT_REQUIRED in (details or "")
                    ):
                        # A refused client certificate shows only in grpc's own log ("alert
                        # certificate required"), never in the status: a hint, and keep retrying.
                        log.warning(
                            "the service may require a client certificate (mTLS): pass --tls-cert and --tls-key",
                            extra=at,
                        )
            if session.welcomed:
                attempt = 0
            if stop.is_set():
                break
            base, cap = self.backoff_s
            delay = min(cap, base * 2**attempt) * random.uniform(0.8, 1.2)
            attempt += 1
            log.info("reconnecting in %.2fs", delay, extra=at)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass


class _Fleet:
    """One reconnecting session per service; a service that goes away (DNS) is drained."""

    def __init__(self, conn: _Connection, stop: asyncio.Event) -> None:
        self.conn = conn
        self.stop = stop
        self.members: Dict[str, tuple[asyncio.Event, asyncio.Task[None]]] = {}
        self.failure: Optional[BaseException] = None

    def add(self, target: str, server_name: Optional[str] = None) -> None:
        if target in self.members or self.stop.is_set():
            return
        own = asyncio.Event()
        task = asyncio.create_task(self.conn.serve(target, own, server_name))
        task.add_done_callback(self._ended)
        self.members[target] = (own, task)

    def remove(self, target: str) -> None:
        """Drains the service's session (it ends when the service has ended the stream)."""
        member = self.members.pop(target, None)
        if member is not None:
            member[0].set()

    def targets(self) -> List[str]:
        return list(self.members)

    def _ended(self, task: "asyncio.Task[None]") -> None:
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()
            self.stop.set()

    async def close(self) -> None:
        """Drains every session and waits for them all."""
        tasks = [t for _, t in self.members.values()]
        for own, _ in self.members.values():
            own.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _watch_dns(
    dns: DnsTarget, fleet: _Fleet, resolver: Resolver, interval_s: float, stop: asyncio.Event
) -> None:
    """Keeps one session per address of `dns`, re-resolving every `interval_s`."""
    current: set[str] = set()
    name = f"dns:///{dns.name}:{dns.port}"
    while not stop.is_set():
        try:
            want = {dns.address(ip) for ip in await resolver(dns.name)}
        except Exception as e:  # noqa: BLE001 - keep the sessions we have; try again later
            log.warning("resolving %s failed; keeping %d sessions: %s", dns.name, len(current), e, extra={"target": name})
        else:
            for t in sorted(want - current):
                log.info("%s resolves to %s: opening a session", dns.name, t, extra={"target": t})
                fleet.add(t, server_name=dns.name)
            for t in sorted(current - want):
                log.info("%s no longer resolves to %s: draining its session", dns.name, t, extra={"target": t})
                fleet.remove(t)
            current = want
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except asyncio.TimeoutError:
            pass


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
    resolve_interval_ms: float = 30_000,
    resolver: Optional[Resolver] = None,
) -> Summary:
    """Decides every request of every service in `target` with `handler` until `stop` is set or
    SIGINT/SIGTERM arrives; then drains every session and returns the summary.

    `target` is a comma-separated list of `host:port`, `[v6addr]:port`, `unix:/path` and
    `dns:///name:port` (one session per address `name` resolves to, re-resolved every
    `resolve_interval_ms` with `resolver`, default the system's A and AAAA lookup). Each session
    reconnects on its own (jittered exponential backoff). `payload_bytes`: how much of each
    payload the service sends (Request.payload). `tls`: TLS (and mTLS) instead of plaintext.
    Raises ValueError for a bad target list, AuthError when a service refuses the credentials,
    HelloRejected when it refuses the Hello, TlsError when the TLS handshake fails (the other
    sessions are drained first)."""
    targets = parse_targets(target)
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
    conn = _Connection(handler, hello, metadata, Summary(), tls, backoff_s)
    fleet = _Fleet(conn, stop)
    watchers = []
    for t in targets:
        if isinstance(t, DnsTarget):
            watchers.append(
                asyncio.create_task(_watch_dns(t, fleet, resolver or system_resolver, resolve_interval_ms / 1000, stop))
            )
        else:
            fleet.add(str(t))
    try:
        await stop.wait()
    finally:
        for w in watchers:
            w.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await fleet.close()
    if fleet.failure is not None:
        raise fleet.failure
    return conn.summary
