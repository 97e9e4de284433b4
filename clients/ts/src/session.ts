/**
 * One service: the Connect stream from Hello to its status, reopened with jittered backoff until
 * the signal aborts or the service refuses the session for good.
 */
import {
  type ChannelCredentials,
  type ChannelOptions,
  type ClientDuplexStream,
  credentials,
  status as grpcStatus,
  Metadata,
  type StatusObject,
} from "@grpc/grpc-js";
import { type BackoffOptions, backoffDelay } from "./backoff.js";
import {
  Action,
  type ClientMessage,
  EchoForwarderClient,
  type EchoRequest,
  Family,
  Mode,
  type ServerMessage,
  SyntheticErrorType,
  type Verdict,
} from "./gen/icmpfwd/v1/forwarder.js";
import type { Logger } from "./log.js";
import { type PolicyRequest, toPolicyRequest } from "./request.js";
import {
  type DecisionSpan,
  endDecisionSpan,
  startDecisionSpan,
  withDecisionSpan,
} from "./tracing.js";
import type {
  ActionName,
  ClientStats,
  ConnectOptions,
  Decision,
  ServiceState,
  SyntheticAnswer,
  SyntheticErrorName,
  TlsOptions,
} from "./types.js";

export const PROTOCOL_VERSION = 1;

export class PolicyClientError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
    this.name = "PolicyClientError";
  }
}

const ACTIONS: Record<ActionName, Action> = {
  reply: Action.ACTION_REPLY,
  consume: Action.ACTION_CONSUME,
  fallthrough: Action.ACTION_FALLTHROUGH,
};

const SYNTHETIC_ERRORS: Record<SyntheticErrorName, SyntheticErrorType> = {
  "time-exceeded": SyntheticErrorType.SYNTHETIC_ERROR_TYPE_TIME_EXCEEDED,
  "net-unreachable": SyntheticErrorType.SYNTHETIC_ERROR_TYPE_NET_UNREACHABLE,
  "host-unreachable": SyntheticErrorType.SYNTHETIC_ERROR_TYPE_HOST_UNREACHABLE,
  "protocol-unreachable": SyntheticErrorType.SYNTHETIC_ERROR_TYPE_PROTOCOL_UNREACHABLE,
  "port-unreachable": SyntheticErrorType.SYNTHETIC_ERROR_TYPE_PORT_UNREACHABLE,
  "admin-prohibited": SyntheticErrorType.SYNTHETIC_ERROR_TYPE_ADMIN_PROHIBITED,
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

function channelCredentials(tls: TlsOptions | undefined): ChannelCredentials {
  if (tls === undefined) return credentials.createInsecure();
  return credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
}

/** Request ids of recent verdicts and their trace ids, so a Rejection's log line has one. */
const RECENT_TRACES = 4096;

export interface SessionContext {
  o: ConnectOptions;
  stats: ClientStats;
  log: Logger;
  backoff: BackoffOptions;
  /** The fleet's signal: aborting drains this session too. */
  signal: AbortSignal;
}

export interface Session {
  readonly state: ServiceState;
  /** Resolves when the session stops after a drain; rejects with a PolicyClientError. */
  readonly done: Promise<void>;
  /** Drains this session only (its service went away). */
  drain(): void;
}

/**
 * Keeps a session with one service. `serverName` is the TLS name to check when the target is a
 * resolved address (a `dns:///` element): the name, not the address.
 */
export function startSession(ctx: SessionContext, target: string, serverName?: string): Session {
  const { o, stats, backoff } = ctx;
  const observe = o.mode === "observe";
  const name = o.name ?? "icmpfwd-client-ts";
  const tlsName = o.tls?.serverName ?? (o.tls !== undefined ? serverName : undefined);
  const channelOptions: ChannelOptions =
    tlsName === undefined
      ? {}
      : { "grpc.ssl_target_name_override": tlsName, "grpc.default_authority": tlsName };
  const client = new EchoForwarderClient(target, channelCredentials(o.tls), channelOptions);
  const own = new AbortController();
  const signal = AbortSignal.any([ctx.signal, own.signal]);
  const state: ServiceState = { target, connected: false, session: null };
  const log: Logger = (level, msg, fields) =>
    ctx.log(level, msg, {
      target,
      ...(state.session === null ? {} : { session: state.session }),
      ...fields,
    });
  /** Decision spans of requests still being decided (only while an SDK records them). */
  const spans = new WeakMap<PolicyRequest, DecisionSpan>();
  const recentTraces = new Map<bigint, string | null>();

  /** One Connect stream, from Hello to its status. */
  const stream = (): Promise<{ status: StatusObject; welcomed: boolean }> =>
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
        recentTraces.set(req.id, req.traceId);
        if (recentTraces.size > RECENT_TRACES)
          recentTraces.delete(recentTraces.keys().next().value!);
        log("debug", "decided", {
          request_id: req.id,
          sequence: req.sequence,
          action: r.action,
          trace_id: req.traceId,
        });
        if (!sync) queueFlush();
        const syn = r.awaitSynthetic ?? r.syntheticReply;
        if (syn !== undefined && r.action === "consume") {
          pendingSynthetic++;
          const failedSynthetic = (e: unknown): void => {
            log("error", "synthetic reply delay failed; no synthetic reply", {
              request_id: req.id,
              trace_id: req.traceId,
              error: e instanceof Error ? e.message : String(e),
            });
            syntheticDone();
          };
          const answer = (a: SyntheticAnswer | null): void => {
            if (ended) return;
            if (a === null) {
              syntheticDone();
              return;
            }
            const send = (): void =>
              write({
                message: {
                  $case: "syntheticReply",
                  value: {
                    requestId: req.id,
                    payload: a.payload === undefined ? undefined : Buffer.from(a.payload),
                    error:
                      a.error === undefined
                        ? undefined
                        : { type: SYNTHETIC_ERRORS[a.error.type], source: a.error.source },
                  },
                },
              });
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
            const d = a.delayMs ?? 0;
            if (typeof d === "number") after(d);
            else Promise.resolve(d).then(after, failedSynthetic);
          };
          if (isThenable(syn)) Promise.resolve(syn).then(answer, failedSynthetic);
          else answer(syn);
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
          request_id: req.id,
          trace_id: req.traceId,
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
          else log("error", "handler failed", { trace_id: req.traceId, error: String(err) });
          return;
        }
        if (observe) {
          if (isThenable(r))
            Promise.resolve(r).catch((err: unknown) =>
              log("error", "handler failed", { trace_id: req.traceId, error: String(err) }),
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
            state.connected = true;
            state.session = msg.value.sessionId;
            stats.sessions++;
            log("info", "connected", { max_in_flight: msg.value.maxInFlight });
            o.onWelcome?.(msg.value, target);
            if (signal.aborted) startDrain();
            break;
          case "requests":
            for (const e of msg.value.requests) handle(e);
            flush();
            break;
          case "rejection":
            log("warn", "rejected", {
              request_id: msg.value.requestId,
              trace_id: recentTraces.get(msg.value.requestId) ?? null,
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
        state.connected = false;
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
        const { status, welcomed } = await stream();
        const session = state.session;
        state.session = null;
        if (signal.aborted) break;
        if (welcomed) attempt = 0;
        if (PERMANENT.has(status.code)) {
          const what =
            status.code === grpcStatus.UNAUTHENTICATED ||
            status.code === grpcStatus.PERMISSION_DENIED
              ? "authentication failed (check the token)"
              : "the service refused the session";
          throw new PolicyClientError(
            `${target}: ${what}: ${grpcStatus[status.code]}: ${status.details}`,
            status.code,
          );
        }
        const delay = backoffDelay(attempt++, backoff);
        log(welcomed ? "warn" : "info", "disconnected; reconnecting", {
          ...(session === null ? {} : { session }),
          code: grpcStatus[status.code],
          details: status.details,
          delay_ms: Math.round(delay),
        });
        await sleep(delay);
      }
    } finally {
      state.session = null;
      client.close();
    }
  };

  const done = run();
  // `done` is the fleet's to observe; never an unhandled rejection from here.
  done.catch(() => {});
  return { state, done, drain: () => own.abort() };
}
