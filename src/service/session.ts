/**
 * One Connect stream: Hello → Welcome, then Echo Request batches out and verdict batches in.
 * Events are batched per session and flushed when the batch is full or at the end of the
 * current tick (a microtask: at low load a lone request goes out at once). A write() that
 * returns false makes the session not writable until 'drain', so it gets nothing more meanwhile.
 * The session is in one state at a time: awaiting Hello, deciding, observing, or ended.
 *
 * Bounds on what a client can make it hold: a stream without Hello ends after helloTimeoutMs
 * (DEADLINE_EXCEEDED); a stream whose write() said to wait and that sees no 'drain' for
 * writeStallMs (the client reads nothing: HTTP/2 flow control holds every byte queued) ends
 * RESOURCE_EXHAUSTED, as does one with MAX_QUEUED_WRITES messages queued (a client that keeps
 * sending but never reads); a verdict batch longer than the session's max_in_flight is refused
 * whole (it cannot hold that many valid verdicts, and each invalid one would be answered).
 */

import { randomUUID } from "node:crypto";
import { constants as http2Constants } from "node:http2";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import {
  Action,
  type ClientMessage,
  type Filter,
  type Hello,
  Mode,
  type ServerMessage,
  type Session,
} from "../gen/icmpfwd/v1/forwarder.js";
import { type Caller, type SessionRecord, withTrace } from "./audit.js";
import { authorize, authorizeFilter, type Principal } from "./auth.js";
import type { CallTrace, TraceIds } from "./call-telemetry.js";
import type { Dispatcher, SessionSink, SessionSlot } from "./dispatcher.js";
import {
  type RejectionKind,
  rejectionReason,
  type ServiceError,
  serviceError,
  toGrpcError,
} from "./errors.js";
import { SessionFilter } from "./filter.js";
import type { ObserverSink, ObserverSlot } from "./observers.js";
import type { PolicyAction } from "./outcomes.js";
import { syntheticAnswerOf } from "./synthetic-answer.js";
import {
  type ClientInput,
  EventBatch,
  type EventSource,
  protoTimeOfMs,
  type ServerOutput,
  UndecodableMessage,
  Verdicts,
} from "./wire.js";

export const PROTOCOL_VERSION = 1;

/** Messages a stream may have queued before a client that does not read is cut off. */
export const MAX_QUEUED_WRITES = 4096;

/** Hello.client_name: the most UTF-8 bytes (it is shown in logs, metrics and ListSessions). */
export const MAX_CLIENT_NAME_BYTES = 256;

export interface SessionLimits {
  /** max_in_flight for a Hello that says 0. */
  defaultMaxInFlight: number;
  /** The most max_in_flight a Hello may ask for; more is cut to it. */
  maxInFlightCap: number;
  /** Most events in one EchoRequestBatch. */
  maxBatch: number;
  /** A batch is flushed early once its events reach this many bytes. */
  maxBatchBytes: number;
  /** The most payload bytes an event carries (Hello.payload_bytes is cut to it). */
  maxPayloadBytes: number;
  /** Copies an observe session may have queued (not yet handed to the socket); more are dropped. */
  observerQueue: number;
  /**
   * How long the stream may stay full (a write() said to wait, and no 'drain' came) before the
   * client counts as not reading and the stream ends RESOURCE_EXHAUSTED.
   */
  writeStallMs: number;
  /** How long a stream may go without Hello before it ends DEADLINE_EXCEEDED. */
  helloTimeoutMs: number;
}

export type ConnectCall = ServerDuplexStream<ClientInput, ServerOutput>;

export function wireAction(a: PolicyAction): Action {
  return a === "consume" ? Action.ACTION_CONSUME : Action.ACTION_FALLTHROUGH;
}

/** Where a session is in its life; the slot is the dispatcher's view of it in that mode. */
type SessionState =
  | { readonly kind: "awaitingHello" }
  | { readonly kind: "deciding"; readonly hello: Hello; readonly slot: SessionSlot }
  | { readonly kind: "observing"; readonly hello: Hello; readonly slot: ObserverSlot }
  | { readonly kind: "ended" };

/** What the session tells its owner (the service: its session set and the audit log). */
export interface SessionHooks {
  /** Hello was accepted: the session decides or observes from now on. */
  opened(s: SessionRecord): void;
  /**
   * The stream ended. `record` is null when it never said Hello; `error` is what the server
   * ended it with (null: OK, or the client ended it).
   */
  ended(s: ConnectSession, record: SessionRecord | null, error: ServiceError | null): void;
}

const AWAITING_HELLO: SessionState = { kind: "awaitingHello" };
const ENDED: SessionState = { kind: "ended" };

export class ConnectSession implements SessionSink, ObserverSink {
  readonly id = randomUUID();
  readonly connectedAtMs = Date.now();
  /** Taken at the start: once the stream has ended grpc-js no longer knows it. */
  private readonly peer: string;
  private state: SessionState = AWAITING_HELLO;
  /** False from a write() that said to wait (while deciding) until the stream's 'drain'. */
  private streamWritable = true;
  private rejections = 0;
  /** Observe mode: copies queued and not yet handed to the socket. */
  private queuedCopies = 0;
  private payloadBytes = 0;
  private readonly batch = new EventBatch();
  private flushQueued = false;
  /** flush() as a microtask, made with the first event (an idle session holds none). */
  private flushTask: (() => void) | null = null;
  /** What decisions link to: the Connect stream's own span (a long-lived stream is no parent). */
  private readonly streamLink: unknown;
  /** The Connect call's sampled trace ids, for the session's audit lines. */
  private readonly traceIds: TraceIds | null;
  /** Armed until Hello; ends the stream when no Hello came in time. */
  private helloTimer: ReturnType<typeof setTimeout> | null;
  /** Whether the stream is full: a write() said to wait and no 'drain' has come since. */
  private stalled = false;
  /** Re-armed (refresh(), no allocation) at each stall; when it fires still stalled, the end. */
  private stallTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly call: ConnectCall,
    private readonly dispatcher: Dispatcher,
    private readonly limits: SessionLimits,
    private readonly hooks: SessionHooks,
    private readonly principal: Principal,
    trace: CallTrace | null = null,
  ) {
    this.peer = call.getPeer();
    this.streamLink = trace?.link;
    this.traceIds = trace?.ids ?? null;
    call.on("data", (m: ClientInput) => this.receive(m));
    // The client half-closed: it will send no more verdicts, so its requests move on now.
    call.on("end", () => this.finish(null));
    call.on("cancelled", () => this.finish(null));
    call.on("error", () => this.finish(null));
    call.on("drain", () => {
      this.streamWritable = true;
      this.stalled = false;
    });
    this.helloTimer = setTimeout(() => {
      const ms = this.limits.helloTimeoutMs;
      this.finish(serviceError("deadlineExceeded", `no Hello came within ${ms} ms`));
    }, limits.helloTimeoutMs);
    this.helloTimer.unref();
  }

  // ---- SessionSink (called by the dispatcher) ----

  get writable(): boolean {
    return this.streamWritable;
  }

  send(p: EventSource, nowMs: number): void {
    this.batch.add(p, this.payloadBytes, nowMs, this.dispatcher.wallOffsetMs);
    if (this.batch.count >= this.limits.maxBatch || this.batch.bytes >= this.limits.maxBatchBytes) {
      this.flush();
    } else if (!this.flushQueued) {
      this.flushQueued = true;
      this.flushTask ??= () => this.flush();
      queueMicrotask(this.flushTask);
    }
  }

  // ---- ObserverSink ----

  copy(e: EventSource): boolean {
    if (this.state.kind === "ended" || this.queuedCopies >= this.limits.observerQueue) {
      this.batch.drops++;
      return false;
    }
    this.queuedCopies++;
    this.send(e, this.dispatcher.scheduler.nowMs());
    return true;
  }

  /** The session as ListSessions shows it; null before Hello. */
  info(): Session | null {
    const st = this.state;
    if (st.kind === "awaitingHello" || st.kind === "ended") return null;
    const h = st.hello;
    const deciding = st.kind === "deciding" ? st.slot : null;
    return {
      sessionId: this.id,
      clientName: h.clientName,
      mode: h.mode,
      filter: h.filter ?? emptyFilter(),
      maxInFlight: deciding?.maxInFlight ?? 0,
      inFlight: deciding?.inFlight ?? 0,
      decided: BigInt(deciding?.decided ?? 0),
      rejections: BigInt(this.rejections),
      connectedAt: protoTimeOfMs(this.connectedAtMs),
      peer: this.peer,
      draining: deciding?.draining ?? false,
      dropped: BigInt(st.kind === "observing" ? st.slot.dropped : 0),
      identity: this.principal.identity,
    };
  }

  reject(requestId: bigint, kind: RejectionKind, message: string): void {
    this.rejections++;
    this.write({
      message: {
        $case: "rejection",
        value: { requestId, reason: rejectionReason(kind), message },
      },
    });
  }

  idle(): void {
    // Draining with nothing in flight: the stream ends with OK.
    this.flush();
    this.finish(null);
  }

  // ---- called by the server ----

  /** The server drains: tell the client, and take no new requests. */
  serverDraining(graceMs: number): void {
    const st = this.state;
    switch (st.kind) {
      case "ended":
        return;
      case "awaitingHello":
        this.finish(serviceError("shuttingDown", "the server is shutting down"));
        return;
      case "deciding":
      case "observing":
        this.write({ message: { $case: "draining", value: { grace: protoTimeOfMs(graceMs) } } });
        if (st.kind === "deciding") this.dispatcher.drainSession(st.slot);
        else this.idle();
    }
  }

  /** Ends the stream with `error` (or OK); in-flight requests move on or get on-disconnect. */
  finish(error: ServiceError | null): void {
    const st = this.state;
    if (st.kind === "ended") return;
    this.state = ENDED;
    this.batch.clear();
    this.clearTimers();
    if (st.kind === "deciding") this.dispatcher.closeSession(st.slot);
    else if (st.kind === "observing") this.dispatcher.closeObserver(st.slot);
    const record = st.kind === "awaitingHello" ? null : this.record(st.hello);
    if (!this.call.cancelled && !this.call.writableEnded) {
      if (error === null) this.call.end();
      else this.call.emit("error", toGrpcError(error));
      // The status goes out after what is queued; a client that reads nothing never lets it
      // through, so the stream is reset after one more stall bound.
      if (this.call.writableLength > 0) resetIfStillOpen(this.call, this.limits.writeStallMs);
    }
    this.hooks.ended(this, record, error);
  }

  /** Who this session is, for the audit log. */
  private record(h: Hello): SessionRecord {
    return {
      sessionId: this.id,
      clientName: h.clientName,
      mode: h.mode === Mode.MODE_OBSERVE ? "observe" : "decide",
      ...this.caller,
    };
  }

  /** Who is on the other end before Hello says more (the audit log's forced disconnects). */
  get caller(): Caller {
    return withTrace({ identity: this.principal.identity, peer: this.peer }, this.traceIds);
  }

  // ---- inbound ----

  private receive(m: ClientInput): void {
    const st = this.state;
    if (st.kind === "ended") return;
    const d = this.dispatcher;
    if (m instanceof Verdicts) {
      this.verdicts(m);
      return;
    }
    if (m instanceof UndecodableMessage) {
      d.reject(this, 0n, "invalidArgument", `the message is not a ClientMessage: ${m.reason}`);
      return;
    }
    const msg = (m as ClientMessage).message;
    if (msg === undefined) {
      d.reject(this, 0n, "invalidArgument", "empty ClientMessage");
      return;
    }
    switch (msg.$case) {
      case "hello":
        this.hello(msg.value);
        return;
      case "verdicts":
        this.verdicts(Verdicts.of(msg.value.verdicts));
        return;
      case "drain":
        if (st.kind === "deciding") d.drainSession(st.slot);
        else if (st.kind === "observing") this.idle();
        else d.reject(this, 0n, "protocolViolation", "Drain before Hello");
        return;
      case "syntheticReply": {
        const id = msg.value.requestId;
        if (st.kind === "deciding") {
          const answer = syntheticAnswerOf(msg.value);
          if (typeof answer === "string") d.reject(this, id, "invalidArgument", answer);
          else d.syntheticReply(st.slot, id, answer);
        } else if (st.kind === "observing")
          d.reject(
            this,
            id,
            "syntheticNotAllowed",
            "an observe session consumes nothing, so it sends no synthetic replies",
          );
        else d.reject(this, id, "protocolViolation", "a synthetic reply before Hello");
        return;
      }
    }
  }

  private verdicts(v: Verdicts): void {
    const d = this.dispatcher;
    const st = this.state;
    // A session holds at most max_in_flight requests, so a longer batch cannot be all valid;
    // it is refused whole, with one Rejection instead of one per verdict.
    const most = st.kind === "deciding" ? st.slot.maxInFlight : this.limits.defaultMaxInFlight;
    if (v.length > most) {
      d.reject(
        this,
        0n,
        "invalidArgument",
        `verdicts: at most ${most} per VerdictBatch (${st.kind === "deciding" ? "the session's max_in_flight" : "before Hello or when observing, the default max_in_flight"}), got ${v.length}; none applied`,
      );
      return;
    }
    if (st.kind === "deciding") {
      d.decide(st.slot, v);
      return;
    }
    const why =
      st.kind === "observing" ? "an observe session sends no verdicts" : "a verdict before Hello";
    for (let i = 0; i < v.length; i++) d.reject(this, v.requestId(i), "protocolViolation", why);
  }

  private hello(h: Hello): void {
    const d = this.dispatcher;
    if (this.state.kind !== "awaitingHello") {
      d.reject(this, 0n, "protocolViolation", "a second Hello");
      return;
    }
    if (this.helloTimer !== null) clearTimeout(this.helloTimer);
    this.helloTimer = null;
    const problem = this.checkHello(h);
    if (problem !== null) {
      this.finish(problem);
      return;
    }
    const filter = SessionFilter.compile(h.filter);
    if (!(filter instanceof SessionFilter)) {
      this.finish(filter);
      return;
    }
    const l = this.limits;
    const maxInFlight = Math.min(
      h.maxInFlight === 0 ? l.defaultMaxInFlight : h.maxInFlight,
      l.maxInFlightCap,
    );
    this.payloadBytes = Math.min(h.payloadBytes, l.maxPayloadBytes);
    const p = d.policy;
    // Welcome goes out before the session can be given any request.
    this.write({
      message: {
        $case: "welcome",
        value: {
          protocolVersion: PROTOCOL_VERSION,
          sessionId: this.id,
          deadline: protoTimeOfMs(d.deadlineMs),
          onTimeout: wireAction(p.onTimeout),
          onNoClient: wireAction(p.onNoClient),
          onOverload: wireAction(p.onOverload),
          onDisconnect: wireAction(p.onDisconnect),
          maxInFlight,
          maxBatch: l.maxBatch,
        },
      },
    });
    // A client that reads nothing may have been cut off by that write: no slot for it then.
    if (this.hasEnded()) return;
    this.state =
      h.mode === Mode.MODE_OBSERVE
        ? { kind: "observing", hello: h, slot: d.openObserver(filter, this) }
        : {
            kind: "deciding",
            hello: h,
            slot: d.openSession(filter, maxInFlight, this, {
              sessionId: this.id,
              clientName: h.clientName,
              streamLink: this.streamLink,
            }),
          };
    this.hooks.opened(this.record(h));
  }

  private checkHello(h: Hello): ServiceError | null {
    if (h.protocolVersion !== PROTOCOL_VERSION) {
      return serviceError(
        "unsupportedVersion",
        `protocol_version ${h.protocolVersion} is not supported; this server speaks ${PROTOCOL_VERSION}`,
      );
    }
    if (h.mode !== Mode.MODE_DECIDE && h.mode !== Mode.MODE_OBSERVE) {
      return serviceError("invalidHello", `mode: ${h.mode} is not MODE_DECIDE or MODE_OBSERVE`);
    }
    const nameBytes = Buffer.byteLength(h.clientName, "utf8");
    if (nameBytes > MAX_CLIENT_NAME_BYTES)
      return serviceError(
        "invalidHello",
        `client_name: at most ${MAX_CLIENT_NAME_BYTES} bytes (UTF-8), got ${nameBytes}`,
      );
    const denied =
      authorize(this.principal, h.mode === Mode.MODE_DECIDE ? "decide" : "observe") ??
      authorizeFilter(this.principal, h.filter);
    if (denied !== null) return denied;
    if (this.dispatcher.draining) return serviceError("shuttingDown", "the server is draining");
    return null;
  }

  /** A method, not a field test: the compiler would keep a narrowing across the write. */
  private hasEnded(): boolean {
    return this.state.kind === "ended";
  }

  // ---- outbound ----

  private flush(): void {
    this.flushQueued = false;
    if (this.batch.count === 0 || this.state.kind === "ended") return;
    if (this.state.kind !== "observing") {
      this.write(this.batch.take());
      return;
    }
    // Observe mode: the copies leave the queue once the stream has handed them to the socket.
    const n = this.batch.count;
    this.write(this.batch.take(), () => {
      this.queuedCopies -= n;
    });
  }

  private write(m: ServerOutput | ServerMessage, written?: () => void): void {
    if (this.state.kind === "ended" || this.call.writableEnded) return;
    // Events stop at the first false write(); rejections answer client input, so a client that
    // keeps sending but never reads could still grow the queue: past a bound, the stream ends.
    if (this.call.writableLength >= MAX_QUEUED_WRITES) {
      this.finish(serviceError("resourceExhausted", "the client does not read its stream"));
      return;
    }
    if (this.call.write(m, written)) return;
    // Only a deciding session is given requests, so only its writes gate what it gets.
    if (this.state.kind === "deciding") this.streamWritable = false;
    if (this.stalled) return;
    // The stream is full: unless 'drain' comes within writeStallMs, the client reads nothing.
    this.stalled = true;
    if (this.stallTimer === null) {
      this.stallTimer = setTimeout(() => this.stallExpired(), this.limits.writeStallMs);
      this.stallTimer.unref();
    } else this.stallTimer.refresh();
  }

  private stallExpired(): void {
    if (!this.stalled) return;
    const ms = this.limits.writeStallMs;
    this.finish(
      serviceError(
        "resourceExhausted",
        `the client does not read its stream: it stayed full for ${ms} ms`,
      ),
    );
  }

  private clearTimers(): void {
    if (this.helloTimer !== null) clearTimeout(this.helloTimer);
    if (this.stallTimer !== null) clearTimeout(this.stallTimer);
    this.helloTimer = null;
    this.stallTimer = null;
  }
}

/** The HTTP/2 stream under a grpc-js call, where grpc-js keeps it (null if it moved). */
interface ResettableStream {
  readonly closed: boolean;
  close(code: number): void;
}

function http2StreamOf(call: ConnectCall): ResettableStream | null {
  // ServerDuplexStream.call → ServerInterceptingCall.nextCall … → BaseServerInterceptingCall.stream
  let c = (call as unknown as { call?: unknown }).call;
  for (let depth = 0; depth < 8 && typeof c === "object" && c !== null; depth++) {
    const stream = (c as { stream?: unknown }).stream;
    if (
      typeof stream === "object" &&
      stream !== null &&
      typeof (stream as ResettableStream).close === "function" &&
      typeof (stream as ResettableStream).closed === "boolean"
    )
      return stream as ResettableStream;
    c = (c as { nextCall?: unknown }).nextCall;
  }
  return null;
}

/**
 * Resets the stream with ENHANCE_YOUR_CALM (gRPC clients report RESOURCE_EXHAUSTED) if it is
 * still open after `ms`: its status is stuck behind data the client does not read, and the
 * queue is freed only when the stream closes.
 */
function resetIfStillOpen(call: ConnectCall, ms: number): void {
  const stream = http2StreamOf(call);
  if (stream === null) return;
  setTimeout(() => {
    if (!stream.closed) stream.close(http2Constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }, ms).unref();
}

function emptyFilter(): Filter {
  return { family: 0, sourcePrefixes: [], destinationPrefixes: [], temporaryOnly: false };
}
