/**
 * One Connect stream: Hello → Welcome, then Echo Request batches out and verdict batches in.
 * Events are batched per session and flushed when the batch is full or at the end of the
 * current tick (a microtask: at low load a lone request goes out at once). A write() that
 * returns false makes the session not writable until 'drain', so it gets nothing more meanwhile.
 */
import { randomUUID } from "node:crypto";
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
import { authorize, authorizeFilter, type Principal } from "./auth.js";
import type {
  Dispatcher,
  ObserverSink,
  ObserverSlot,
  SessionSink,
  SessionSlot,
} from "./dispatcher.js";
import {
  type RejectionKind,
  rejectionReason,
  type ServiceError,
  serviceError,
  toGrpcError,
} from "./errors.js";
import { SessionFilter } from "./filter.js";
import type { PolicyAction } from "./outcomes.js";
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
const MAX_QUEUED_WRITES = 4096;

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
}

export type ConnectCall = ServerDuplexStream<ClientInput, ServerOutput>;

export function wireAction(a: PolicyAction): Action {
  return a === "consume" ? Action.ACTION_CONSUME : Action.ACTION_FALLTHROUGH;
}

export class ConnectSession implements SessionSink, ObserverSink {
  readonly id = randomUUID();
  readonly connectedAtMs = Date.now();
  private slot: SessionSlot | null = null;
  private observer: ObserverSlot | null = null;
  private hello_: Hello | null = null;
  private maxInFlight = 0;
  private rejections = 0;
  /** Observe mode: copies queued and not yet handed to the socket. */
  private queuedCopies = 0;
  private payloadBytes = 0;
  private readonly batch = new EventBatch();
  private flushQueued = false;
  private ended = false;
  private readonly streamLink: unknown;

  constructor(
    private readonly call: ConnectCall,
    private readonly dispatcher: Dispatcher,
    private readonly limits: SessionLimits,
    private readonly onEnd: (s: ConnectSession) => void,
    private readonly principal: Principal,
  ) {
    // Decisions link to the Connect stream's span: a long-lived stream is no request's parent.
    this.streamLink = dispatcher.telemetry?.streamLink();
    call.on("data", (m: ClientInput) => this.receive(m));
    // The client half-closed: it will send no more verdicts, so its requests move on now.
    call.on("end", () => this.finish(null));
    call.on("cancelled", () => this.finish(null));
    call.on("error", () => this.finish(null));
    call.on("drain", () => {
      if (this.slot !== null) this.slot.writable = true;
    });
  }

  // ---- SessionSink (called by the dispatcher) ----

  send(p: EventSource, nowMs: number): void {
    this.batch.add(p, this.payloadBytes, nowMs, this.dispatcher.wallOffsetMs);
    if (this.batch.count >= this.limits.maxBatch || this.batch.bytes >= this.limits.maxBatchBytes) {
      this.flush();
    } else if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flush);
    }
  }

  // ---- ObserverSink ----

  copy(e: EventSource): boolean {
    if (this.ended || this.queuedCopies >= this.limits.observerQueue) {
      this.batch.drops++;
      return false;
    }
    this.queuedCopies++;
    this.send(e, this.dispatcher.scheduler.nowMs());
    return true;
  }

  /** The session as ListSessions shows it; null before Hello. */
  info(): Session | null {
    const h = this.hello_;
    if (h === null) return null;
    const slot = this.slot;
    return {
      sessionId: this.id,
      clientName: h.clientName,
      mode: h.mode,
      filter: h.filter ?? emptyFilter(),
      maxInFlight: slot === null ? 0 : this.maxInFlight,
      inFlight: slot?.inFlight ?? 0,
      decided: BigInt(slot?.decided ?? 0),
      rejections: BigInt(this.rejections),
      connectedAt: protoTimeOfMs(this.connectedAtMs),
      peer: this.call.getPeer(),
      draining: slot?.draining ?? false,
      dropped: BigInt(this.observer?.dropped ?? 0),
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
    if (this.ended) return;
    if (this.slot === null && this.observer === null) {
      this.finish(serviceError("shuttingDown", "the server is shutting down"));
      return;
    }
    this.write({ message: { $case: "draining", value: { grace: protoTimeOfMs(graceMs) } } });
    if (this.slot !== null) this.dispatcher.drainSession(this.slot);
    else this.idle();
  }

  /** Ends the stream with `error` (or OK); in-flight requests move on or get on-disconnect. */
  finish(error: ServiceError | null): void {
    if (this.ended) return;
    this.ended = true;
    this.batch.clear();
    if (this.slot !== null) this.dispatcher.closeSession(this.slot);
    if (this.observer !== null) this.dispatcher.closeObserver(this.observer);
    if (!this.call.cancelled && !this.call.writableEnded) {
      if (error === null) this.call.end();
      else this.call.emit("error", toGrpcError(error));
    }
    this.onEnd(this);
  }

  // ---- inbound ----

  private receive(m: ClientInput): void {
    if (this.ended) return;
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
        if (this.observer !== null) this.idle();
        else if (this.slot === null) d.reject(this, 0n, "protocolViolation", "Drain before Hello");
        else d.drainSession(this.slot);
        return;
      case "syntheticReply":
        if (this.slot !== null) d.syntheticReply(this.slot, msg.value.requestId, msg.value.payload);
        else
          d.reject(
            this,
            msg.value.requestId,
            this.observer !== null ? "syntheticNotAllowed" : "protocolViolation",
            this.observer !== null
              ? "an observe session consumes nothing, so it sends no synthetic replies"
              : "a synthetic reply before Hello",
          );
        return;
    }
  }

  private verdicts(v: Verdicts): void {
    const d = this.dispatcher;
    if (this.slot !== null) d.decide(this.slot, v);
    else
      for (let i = 0; i < v.length; i++)
        d.reject(
          this,
          v.requestId(i),
          "protocolViolation",
          this.observer !== null
            ? "an observe session sends no verdicts"
            : "a verdict before Hello",
        );
  }

  private hello(h: Hello): void {
    const d = this.dispatcher;
    if (this.hello_ !== null) {
      d.reject(this, 0n, "protocolViolation", "a second Hello");
      return;
    }
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
    this.maxInFlight = maxInFlight;
    this.hello_ = h;
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
    if (h.mode === Mode.MODE_OBSERVE) this.observer = d.openObserver(filter, this);
    else
      this.slot = d.openSession(filter, maxInFlight, this, {
        sessionId: this.id,
        clientName: h.clientName,
        streamLink: this.streamLink,
      });
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
    const denied =
      authorize(this.principal, h.mode === Mode.MODE_DECIDE ? "decide" : "observe") ??
      authorizeFilter(this.principal, h.filter);
    if (denied !== null) return denied;
    if (this.dispatcher.draining) return serviceError("shuttingDown", "the server is draining");
    return null;
  }

  // ---- outbound ----

  private readonly flush = (): void => {
    this.flushQueued = false;
    if (this.batch.count === 0 || this.ended) return;
    if (this.observer === null) {
      this.write(this.batch.take());
      return;
    }
    // Observe mode: the copies leave the queue once the stream has handed them to the socket.
    const n = this.batch.count;
    this.write(this.batch.take(), () => {
      this.queuedCopies -= n;
    });
  };

  private write(m: ServerOutput | ServerMessage, written?: () => void): void {
    if (this.ended || this.call.writableEnded) return;
    // Events stop at the first false write(); rejections answer client input, so a client that
    // keeps sending but never reads could still grow the queue: past a bound, the stream ends.
    if (this.call.writableLength >= MAX_QUEUED_WRITES) {
      this.finish(serviceError("resourceExhausted", "the client does not read its stream"));
      return;
    }
    if (!this.call.write(m, written) && this.slot !== null) this.slot.writable = false;
  }
}

function emptyFilter(): Filter {
  return { family: 0, sourcePrefixes: [], destinationPrefixes: [], temporaryOnly: false };
}
