/**
 * @icmpfwd/client: a policy client for the icmpfwd decision service (README "The decision
 * service"). `connect({ handler })` opens the Connect stream, says Hello, calls the handler for
 * every Echo Request and sends the verdicts back in batches; it reconnects with jittered
 * exponential backoff and drains cleanly when its AbortSignal fires.
 */

import {
  type ChannelCredentials,
  type ClientDuplexStream,
  credentials,
  status as grpcStatus,
  Metadata,
  type StatusObject,
} from "@grpc/grpc-js";
import ipaddr from "ipaddr.js";
import {
  Action,
  type ClientMessage,
  EchoForwarderClient,
  type EchoRequest,
  Family,
  Mode,
  type ServerMessage,
  type Verdict,
  type Welcome,
} from "./gen/icmpfwd/v1/forwarder.js";
import {
  type DecisionSpan,
  endDecisionSpan,
  startDecisionSpan,
  withDecisionSpan,
} from "./tracing.js";

export const DEFAULT_TARGET = "127.0.0.1:50051";
export const PROTOCOL_VERSION = 1;

export type ActionName = "reply" | "consume" | "fallthrough";

export interface Decision {
  action: ActionName;
  /** Decide the rest of the flow (source, destination, ident) for this long without asking. */
  applyToFlowMs?: number;
  /**
   * With action "consume": send a SyntheticReply for the request after this delay (a Promise:
   * once it settles, after the delay it resolves to).
   */
  syntheticReply?: { delayMs?: number | PromiseLike<number>; payload?: Uint8Array };
}

export type HandlerResult = ActionName | Decision;
export type Handler = (req: PolicyRequest) => HandlerResult | Promise<HandlerResult>;

/** An Echo Request, with addresses as strings. */
export interface PolicyRequest {
  id: bigint;
  family: "ipv4" | "ipv6";
  nic: number;
  source: string;
  destination: string;
  ident: number;
  sequence: number;
  ttl: number;
  tos: number;
  localAddressTemporary: boolean;
  /** The first payload_bytes of the payload (Hello.payloadBytes; 0 by default). */
  payload: Uint8Array;
  payloadLength: number;
  /** Milliseconds since the epoch (undefined when the service did not say). */
  receivedAtMs: number | undefined;
  deadlineMs: number | undefined;
  /** How long the service waits for the verdict, in milliseconds. */
  budgetMs: number | undefined;
  traceparent: string;
  /** The trace id of the W3C traceparent, or null. */
  traceId: string | null;
}

export type LogLevel = "debug" | "info" | "warn" | "error";
export type Logger = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

/** One JSON line on stderr per message at info and above. */
export const stderrLogger: Logger = (level, msg, fields = {}) => {
  if (level === "debug") return;
  process.stderr.write(
    `${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }, (_k, v) =>
      typeof v === "bigint" ? v.toString() : v,
    )}\n`,
  );
};

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  multiplier: number;
  /** 0..1: the delay is the base delay times a uniform factor in [1 - jitter, 1 + jitter]. */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = {
  initialMs: 100,
  maxMs: 5000,
  multiplier: 2,
  jitter: 0.2,
};

/** The delay before reconnect attempt `attempt` (0-based). */
export function backoffDelay(
  attempt: number,
  o: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const base = Math.min(o.maxMs, o.initialMs * o.multiplier ** Math.max(0, attempt));
  const j = Math.min(1, Math.max(0, o.jitter));
  return base * (1 - j + 2 * j * random());
}

export interface FilterOptions {
  family?: "ipv4" | "ipv6";
  sourcePrefixes?: string[];
  destinationPrefixes?: string[];
  temporaryOnly?: boolean;
}

export interface TlsOptions {
  /** PEM: the CA to trust (default: the system's). */
  ca?: Buffer;
  /** PEM: a client certificate and key for mTLS. */
  cert?: Buffer;
  key?: Buffer;
}

export interface ConnectOptions {
  /** `host:port` or `unix:/path` (default 127.0.0.1:50051). */
  target?: string;
  name?: string;
  mode?: "decide" | "observe";
  filter?: FilterOptions;
  maxInFlight?: number;
  payloadBytes?: number;
  /** Sent as `authorization: Bearer TOKEN`. */
  token?: string;
  tls?: TlsOptions;
  /** Aborting drains the session (Drain, wait for in-flight, end) and stops reconnecting. */
  signal?: AbortSignal;
  handler: Handler;
  onLog?: Logger;
  backoff?: Partial<BackoffOptions>;
  /** Called on every Welcome (after every (re)connect). */
  onWelcome?: (w: Welcome) => void;
  /** How long an abort waits for the stream to end before cancelling it (default 5000 ms). */
  drainTimeoutMs?: number;
}

export interface ClientStats {
  decided: Record<ActionName, number>;
  /** Handler errors (each decided fallthrough). */
  errors: number;
  /** Requests seen in observe mode. */
  observed: number;
  /** Welcomes received. */
  sessions: number;
}

export interface PolicyClient {
  readonly stats: ClientStats;
  /** True between a Welcome and the end of that stream. */
  readonly connected: boolean;
  /**
   * Settles when the client stops: resolves after an abort, rejects on a permanent error
   * (authentication, a bad Hello).
   */
  readonly done: Promise<void>;
  /** Drains and stops (like aborting the signal); resolves with `done`. */
  drain(): Promise<void>;
}

/** The W3C traceparent's trace id, or null. */
export function traceIdOf(traceparent: string): string | null {
  const m = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent.trim());
  return m && m[1] !== "0".repeat(32) ? m[1] : null;
}

export function formatAddress(b: Uint8Array): string {
  // RFC 5952 text (as the service writes it); anything not 4 or 16 bytes is shown as hex.
  if (b.length !== 4 && b.length !== 16) return Buffer.from(b).toString("hex");
  const a = ipaddr.fromByteArray(Array.from(b));
  if (a.kind() === "ipv6" && (a as ipaddr.IPv6).isIPv4MappedAddress())
    return `::ffff:${(a as ipaddr.IPv6).toIPv4Address().toString()}`;
  return a.toString();
}

const msOf = (t: { seconds: bigint; nanos: number } | undefined): number | undefined =>
  t === undefined ? undefined : Number(t.seconds) * 1000 + t.nanos / 1e6;

export function toPolicyRequest(e: EchoRequest): PolicyRequest {
  return {
    id: e.requestId,
    family: e.family === Family.FAMILY_IPV6 ? "ipv6" : "ipv4",
    nic: e.nic,
    source: formatAddress(e.source),
    destination: formatAddress(e.destination),
    ident: e.ident,
    sequence: e.sequence,
    ttl: e.ttl,
    tos: e.tos,
    localAddressTemporary: e.localAddressTemporary,
    payload: e.payload,
    payloadLength: e.payloadLength,
    receivedAtMs: msOf(e.receivedAt),
    deadlineMs: msOf(e.deadline),
    budgetMs: msOf(e.budget),
    traceparent: e.traceparent,
    traceId: traceIdOf(e.traceparent),
  };
}

/**
 * Consume the request now, and send a SyntheticReply for it after `delayMs` (a number, or a
 * Promise of one: the delay then counts from when it resolves).
 */
export function syntheticReply(
  _req: PolicyRequest,
  o: { delayMs?: number | PromiseLike<number>; payload?: Uint8Array } = {},
): Decision {
  return { action: "consume", syntheticReply: { delayMs: o.delayMs ?? 0, payload: o.payload } };
}

const ACTIONS: Record<ActionName, Action> = {
  reply: Action.ACTION_REPLY,
  consume: Action.ACTION_CONSUME,
  fallthrough: Action.ACTION_FALLTHROUGH,
};

/** A handler result as a Decision, or an error naming what was wrong. */
function normalize(r: unknown): Decision | Error {
  if (typeof r === "string" && r in ACTIONS) return { action: r as ActionName };
  if (typeof r === "object" && r !== null && typeof (r as Decision).action === "string") {
    const d = r as Decision;
    if (d.action in ACTIONS) return d;
  }
  return new Error(`the handler returned ${String(r)}, not reply, consume or fallthrough`);
}

const isThenable = (v: unknown): v is PromiseLike<unknown> =>
  typeof v === "object" && v !== null && typeof (v as { then?: unknown }).then === "function";

/** Statuses that reconnecting cannot fix. */
const PERMANENT = new Set<number>([
  grpcStatus.UNAUTHENTICATED,
  grpcStatus.PERMISSION_DENIED,
  grpcStatus.FAILED_PRECONDITION,
  grpcStatus.INVALID_ARGUMENT,
  grpcStatus.UNIMPLEMENTED,
]);

export class PolicyClientError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
    this.name = "PolicyClientError";
  }
}

function channelCredentials(tls: TlsOptions | undefined): ChannelCredentials {
  if (tls === undefined) return credentials.createInsecure();
  return credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
}

/** Opens a policy session (and keeps one open) until `signal` aborts. */
export function connect(o: ConnectOptions): PolicyClient {
  const target = o.target ?? DEFAULT_TARGET;
  const log: Logger = o.onLog ?? stderrLogger;
  const backoff: BackoffOptions = { ...DEFAULT_BACKOFF, ...o.backoff };
  const observe = o.mode === "observe";
  const stats: ClientStats = {
    decided: { reply: 0, consume: 0, fallthrough: 0 },
    errors: 0,
    observed: 0,
    sessions: 0,
  };
  const client = new EchoForwarderClient(target, channelCredentials(o.tls));
  const internal = new AbortController();
  const signal = o.signal ? AbortSignal.any([o.signal, internal.signal]) : internal.signal;
  let connected = false;
  const name = o.name ?? "icmpfwd-client-ts";
  /** Decision spans of requests still being decided (only while an SDK records them). */
  const spans = new WeakMap<PolicyRequest, DecisionSpan>();

  /** One Connect stream, from Hello to its status. */
  const session = (): Promise<{ status: StatusObject; welcomed: boolean }> =>
    new Promise((resolve) => {
      const md = new Metadata();
      if (o.token !== undefined) md.set("authorization", `Bearer ${o.token}`);
      const call: ClientDuplexStream<ClientMessage, ServerMessage> = client.connect(md);
      let welcomed = false;
      let ended = false;
      let inFlight = 0;
      let pending: Verdict[] = [];
      let flushQueued = false;
      let draining = false;
      const timers = new Set<NodeJS.Timeout>();
      let idle: (() => void) | null = null;
      /** Synthetic replies promised and not yet sent; a drain sends them first. */
      let pendingSynthetic = 0;
      let syntheticIdle: (() => void) | null = null;
      const syntheticDone = (): void => {
        pendingSynthetic--;
        if (pendingSynthetic === 0 && syntheticIdle !== null) {
          const f = syntheticIdle;
          syntheticIdle = null;
          f();
        }
      };

      const write = (m: ClientMessage): void => {
        if (ended) return;
        try {
          call.write(m);
        } catch (e) {
          log("warn", "write failed", { error: String(e) });
        }
      };
      const flush = (): void => {
        flushQueued = false;
        if (pending.length === 0) return;
        const verdicts = pending;
        pending = [];
        write({ message: { $case: "verdicts", value: { verdicts } } });
      };
      const queueFlush = (): void => {
        if (flushQueued) return;
        flushQueued = true;
        queueMicrotask(flush);
      };
      const settleOne = (): void => {
        inFlight--;
        if (inFlight === 0 && idle !== null) idle();
      };

      const decide = (req: PolicyRequest, r: Decision, sync: boolean): void => {
        const span = spans.get(req);
        if (span !== undefined) {
          spans.delete(req);
          endDecisionSpan(span, r.action);
        }
        if (ended) return;
        stats.decided[r.action]++;
        pending.push({
          requestId: req.id,
          action: ACTIONS[r.action],
          applyToFlowMs: Math.max(0, Math.floor(r.applyToFlowMs ?? 0)),
        });
        log("debug", "decided", { requestId: req.id, action: r.action, traceId: req.traceId });
        if (!sync) queueFlush();
        const syn = r.syntheticReply;
        if (syn !== undefined && r.action === "consume") {
          const send = (): void =>
            write({
              message: {
                $case: "syntheticReply",
                value: {
                  requestId: req.id,
                  payload: syn.payload === undefined ? undefined : Buffer.from(syn.payload),
                },
              },
            });
          pendingSynthetic++;
          const after = (delayMs: number): void => {
            if (ended) return;
            const t = setTimeout(
              () => {
                timers.delete(t);
                send();
                syntheticDone();
              },
              Math.max(0, Number.isFinite(delayMs) ? delayMs : 0),
            );
            timers.add(t);
          };
          const d = syn.delayMs ?? 0;
          if (typeof d === "number") after(d);
          else
            Promise.resolve(d).then(after, (e: unknown) => {
              log("error", "synthetic reply delay failed; no synthetic reply", {
                requestId: req.id,
                traceId: req.traceId,
                error: e instanceof Error ? e.message : String(e),
              });
              syntheticDone();
            });
        }
      };
      const failed = (req: PolicyRequest, e: unknown, sync: boolean): void => {
        stats.errors++;
        const span = spans.get(req);
        if (span !== undefined) {
          spans.delete(req);
          endDecisionSpan(span, "fallthrough", e);
        }
        log("error", "handler failed; fallthrough", {
          requestId: req.id,
          traceId: req.traceId,
          error: e instanceof Error ? e.message : String(e),
        });
        decide(req, { action: "fallthrough" }, sync);
      };

      const handle = (e: EchoRequest): void => {
        const req = toPolicyRequest(e);
        if (observe) stats.observed++;
        const span = observe
          ? null
          : startDecisionSpan(e.traceparent, {
              client: name,
              requestId: req.id,
              sequence: req.sequence,
            });
        if (span !== null) spans.set(req, span);
        let r: unknown;
        try {
          r = withDecisionSpan(span, () => o.handler(req));
        } catch (err) {
          if (!observe) failed(req, err, true);
          else log("error", "handler failed", { traceId: req.traceId, error: String(err) });
          return;
        }
        if (observe) {
          if (isThenable(r))
            Promise.resolve(r).catch((err: unknown) =>
              log("error", "handler failed", { traceId: req.traceId, error: String(err) }),
            );
          return;
        }
        if (!isThenable(r)) {
          const d = normalize(r);
          if (d instanceof Error) failed(req, d, true);
          else decide(req, d, true);
          return;
        }
        inFlight++;
        Promise.resolve(r)
          .then(
            (v) => {
              const d = normalize(v);
              if (d instanceof Error) failed(req, d, false);
              else decide(req, d, false);
            },
            (err: unknown) => failed(req, err, false),
          )
          .catch((err: unknown) => log("error", "internal error", { error: String(err) }))
          .finally(settleOne);
      };

      const startDrain = (): void => {
        if (draining || ended) return;
        draining = true;
        if (!welcomed) {
          call.cancel();
          return;
        }
        const sendDrain = (): void => {
          write({ message: { $case: "drain", value: {} } });
          const finish = (): void => {
            flush();
            if (!ended) call.end();
          };
          if (inFlight === 0) finish();
          else idle = finish;
        };
        // Promised synthetic replies go out before Drain: the service ends a drained stream as soon
        // as no request is in flight.
        if (pendingSynthetic === 0) sendDrain();
        else syntheticIdle = sendDrain;
        const t = setTimeout(() => {
          log("warn", "drain timed out; cancelling the stream");
          call.cancel();
        }, o.drainTimeoutMs ?? 5000);
        t.unref();
        timers.add(t);
      };
      const onAbort = (): void => startDrain();
      signal.addEventListener("abort", onAbort, { once: true });

      call.on("data", (m: ServerMessage) => {
        const msg = m.message;
        if (msg === undefined) return;
        switch (msg.$case) {
          case "welcome":
            welcomed = true;
            connected = true;
            stats.sessions++;
            log("info", "connected", {
              target,
              sessionId: msg.value.sessionId,
              maxInFlight: msg.value.maxInFlight,
            });
            o.onWelcome?.(msg.value);
            if (signal.aborted) startDrain();
            break;
          case "requests":
            for (const e of msg.value.requests) handle(e);
            flush();
            break;
          case "rejection":
            log("warn", "rejected", {
              requestId: msg.value.requestId,
              reason: msg.value.reason,
              message: msg.value.message,
            });
            break;
          case "draining":
            log("info", "the service is draining");
            break;
        }
      });
      call.on("error", () => {});
      call.on("status", (s: StatusObject) => {
        ended = true;
        connected = false;
        signal.removeEventListener("abort", onAbort);
        for (const t of timers) clearTimeout(t);
        timers.clear();
        resolve({ status: s, welcomed });
      });

      write({
        message: {
          $case: "hello",
          value: {
            protocolVersion: PROTOCOL_VERSION,
            clientName: name,
            mode: observe ? Mode.MODE_OBSERVE : Mode.MODE_DECIDE,
            filter:
              o.filter === undefined
                ? undefined
                : {
                    family:
                      o.filter.family === "ipv4"
                        ? Family.FAMILY_IPV4
                        : o.filter.family === "ipv6"
                          ? Family.FAMILY_IPV6
                          : Family.FAMILY_UNSPECIFIED,
                    sourcePrefixes: o.filter.sourcePrefixes ?? [],
                    destinationPrefixes: o.filter.destinationPrefixes ?? [],
                    temporaryOnly: o.filter.temporaryOnly ?? false,
                  },
            maxInFlight: o.maxInFlight ?? 0,
            payloadBytes: o.payloadBytes ?? 0,
          },
        },
      });
    });

  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        signal.removeEventListener("abort", done);
        resolve();
      }
      signal.addEventListener("abort", done, { once: true });
    });

  const run = async (): Promise<void> => {
    let attempt = 0;
    try {
      while (!signal.aborted) {
        const { status, welcomed } = await session();
        if (signal.aborted) break;
        if (welcomed) attempt = 0;
        if (PERMANENT.has(status.code)) {
          const what =
            status.code === grpcStatus.UNAUTHENTICATED ||
            status.code === grpcStatus.PERMISSION_DENIED
              ? "authentication failed (check --token)"
              : "the service refused the session";
          throw new PolicyClientError(
            `${what}: ${grpcStatus[status.code]}: ${status.details}`,
            status.code,
          );
        }
        const delay = backoffDelay(attempt++, backoff);
        log(welcomed ? "warn" : "info", "disconnected; reconnecting", {
          target,
          code: grpcStatus[status.code],
          details: status.details,
          delayMs: Math.round(delay),
        });
        await sleep(delay);
      }
    } finally {
      client.close();
    }
  };

  const done = run();
  // `done` is the caller's to observe; never an unhandled rejection from here.
  done.catch(() => {});
  return {
    stats,
    get connected() {
      return connected;
    },
    done,
    drain() {
      internal.abort();
      return done;
    },
  };
}
