/**
 * The gRPC decision service: a Forwarder whose handler is the dispatcher, the grpc-js server
 * whose Connect streams are the decide sessions, the counters, and the drain. Everything it
 * works with (the netstack, telemetry hooks, the operator, the counter registry) is given to
 * it when it is built; a reload reaches it through apply() and the security setters.
 */
import { existsSync, unlinkSync } from "node:fs";
import type { ChannelOptions, ServerWritableStream } from "@grpc/grpc-js";
import type {
  ConfigChange,
  DecisionLatency,
  GetDecisionStatsRequest,
  GetDecisionStatsResponse,
} from "../gen/icmpfwd/v1/admin.js";
import type {
  GetStatsResponse,
  ListSessionsResponse,
  PingEvent,
  PingRequest,
  Session,
} from "../gen/icmpfwd/v1/forwarder.js";
import { ICMPV4_PROTOCOL_NUMBER, ICMPV6_PROTOCOL_NUMBER } from "../netstack/buffer.js";
import { Forwarder } from "../netstack/icmp/forwarder.js";
import type { Stack } from "../netstack/stack.js";
import { msOfDuration, planPing, runPing, watchStats } from "./admin.js";
import { type AuditLog, type Caller, NO_AUDIT } from "./audit.js";
import { Authenticator, type AuthOptions, type AuthzFile, type Principal } from "./auth.js";
import type { CallTelemetry, CallTrace } from "./call-telemetry.js";
import type { Scheduler } from "./deadlines.js";
import { DecisionLatencies, type LatencySummary } from "./decision-latency.js";
import {
  DEFAULT_MAX_PENDING,
  type DecisionSettings,
  Dispatcher,
  type DispatcherOptions,
  type FailurePolicy,
  type Synthesizer,
} from "./dispatcher.js";
import { isServiceError, type ServiceError, serviceError, toGrpcError } from "./errors.js";
import { MAX_PREFIX_TEXT } from "./filter.js";
import type { NetworkChange, NetworkControl } from "./network.js";
import type { RequestTelemetry } from "./request-telemetry.js";
import {
  type AdminHandlers,
  type Listening,
  listen,
  rotateTls,
  SERVICE_NAME,
  shutdown,
  type TlsFiles,
} from "./server.js";
import {
  type ConnectCall,
  ConnectSession,
  type SessionHooks,
  type SessionLimits,
} from "./session.js";
import { stackSynthesizer } from "./synthetic-replies.js";
import { protoTimeOfMs } from "./wire.js";

/** GetDecisionStats: the window when none is given, and its bounds. */
export const DECISION_WINDOW = { defaultMs: 10_000, minMs: 1000, maxMs: 60_000 } as const;

/** What the EchoAdmin RPCs beyond the service itself act on (the daemon's). */
export interface Operator {
  /** Re-reads the configuration and applies what may change (SIGHUP does the same). */
  reload(): Promise<ConfigChange[] | ServiceError>;
  /** The netstack's addresses, routes and NIC modes; null: not changeable here. */
  network: NetworkControl | null;
}

/** Every counter and gauge by dotted name (GetStats, WatchStats). */
export interface CounterSnapshot {
  counters: Record<string, number>;
  gauges: Record<string, number>;
}

export const DEFAULT_LIMITS: Omit<SessionLimits, "helloTimeoutMs"> = {
  defaultMaxInFlight: 1024,
  maxInFlightCap: 65536,
  maxBatch: 128,
  maxBatchBytes: 1 << 20,
  maxPayloadBytes: 65535,
  observerQueue: 1024,
  writeStallMs: 2000,
};

function authOptionsOf(s: SecurityOptions): AuthOptions {
  return {
    token: s.token,
    authz: s.authz,
    clientCertificates: s.tls?.clientCa !== undefined,
    allowUnauthenticated: s.allowUnauthenticated,
  };
}

/** Who may call, and over what (docs/security.md). */
export interface SecurityOptions {
  /** A bearer token (identity "token"). */
  token?: string;
  /** Identities → modes and destination prefixes; tokens → identities. */
  authz?: AuthzFile;
  /** TLS (and mTLS with clientCa) from PEM bytes. */
  tls?: TlsFiles;
  /**
   * Callers without credentials may do everything. Without it (and with no token, authorization
   * file or client CA) only root and the service's own user may call.
   */
  allowUnauthenticated?: boolean;
}

export interface ServiceOptions {
  /** `host:port` (port 0: any free port) or `unix:/path`. */
  listen: string;
  deadlineMs: number;
  policy: FailurePolicy;
  temporaryReply?: boolean;
  /** How long a server drain waits for held requests. */
  drainTimeoutMs: number;
  limits?: Partial<Omit<SessionLimits, "helloTimeoutMs">>;
  /** How long a Connect stream may go without Hello (the default is the config schema's). */
  helloTimeoutMs: number;
  /** Passed to the dispatcher (table sizes, pending bound). */
  dispatcher?: Pick<
    DispatcherOptions,
    | "maxPending"
    | "flowTableSize"
    | "affinityTableSize"
    | "maxFlowMs"
    | "minRedispatchBudgetMs"
    | "synthetic"
  >;
  /** The Forwarder's held-packet bound (default: the pending bound plus headroom). */
  forwarderMaxHeld?: number;
  scheduler?: Scheduler;
  grpcOptions?: ChannelOptions;
  /** How long after a CONSUME verdict a SyntheticReply is honoured (0: never). */
  syntheticWindowMs: number;
  security?: SecurityOptions;
  /** Span and decision-time hooks (src/telemetry); none by default. */
  telemetry?: RequestTelemetry;
  /** A trace per gRPC call (src/telemetry); none by default. */
  calls?: CallTelemetry;
  /**
   * The netstack whose Echo Requests (both families) the service decides, and that Ping and
   * synthetic replies send from. Without one the service only serves its RPCs.
   */
  stack?: Stack;
  /** How synthetic replies are sent (default: the stack's own path, sendSyntheticEchoReply). */
  synthesizer?: Synthesizer;
  /** Reload and network changes (EchoAdmin); without one those RPCs are refused. */
  operator?: Operator;
  /** Sessions, admin changes, refusals and forced disconnects (the daemon's log); none by default. */
  audit?: AuditLog;
  /** What GetStats and WatchStats report (the daemon's counter registry); default: the service's own. */
  stats?: () => CounterSnapshot;
}

export class EchoService {
  readonly dispatcher: Dispatcher;
  /** The handler to install for ICMPv4 and ICMPv6 (see install()). */
  readonly forwarder: Forwarder;
  readonly drainTimeoutMs: number;
  private readonly sessions = new Set<ConnectSession>();
  private readonly watchers = new Set<() => void>();
  private readonly stack: Stack | null;
  private readonly operator: Operator | null;
  private readonly limits: SessionLimits;
  private readonly auth: Authenticator;
  private readonly audit: AuditLog;
  /** Sessions come and go in the set, and in the audit log; the server's own cuts as disconnects. */
  private readonly sessionHooks: SessionHooks = {
    opened: (r) => this.audit.sessionOpened(r),
    ended: (s, record, error) => {
      this.sessions.delete(s);
      const reason = error === null ? "ended" : `${error.kind}: ${error.message}`;
      if (record !== null) this.audit.sessionClosed(record, reason);
      if (
        error !== null &&
        (error.kind === "resourceExhausted" || error.kind === "deadlineExceeded")
      )
        this.audit.disconnected(s.caller, reason);
    },
  };
  /** The bound server; null until listen() has bound it. */
  private listening: Listening | null = null;
  /** Recent decision times (GetDecisionStats), in front of the telemetry hooks. */
  readonly latencies: DecisionLatencies;
  private closed = false;

  constructor(private readonly o: ServiceOptions) {
    const stack = o.stack;
    this.latencies = new DecisionLatencies(o.telemetry ?? null);
    this.dispatcher = new Dispatcher({
      ...o.dispatcher,
      syntheticWindowMs: o.syntheticWindowMs,
      deadlineMs: o.deadlineMs,
      policy: o.policy,
      temporaryReply: o.temporaryReply,
      scheduler: o.scheduler,
      telemetry: this.latencies,
      synthesizer: o.synthesizer ?? (stack === undefined ? undefined : stackSynthesizer(stack)),
    });
    const maxPending = o.dispatcher?.maxPending ?? DEFAULT_MAX_PENDING;
    // The dispatcher bounds what it holds first; the Forwarder's own bound is a backstop that
    // still honours on-overload.
    this.forwarder = new Forwarder(this.dispatcher.handle, {
      maxHeld: o.forwarderMaxHeld ?? maxPending + 4096,
      onOverflow: o.policy.onOverload,
    });
    this.limits = { ...DEFAULT_LIMITS, ...o.limits, helloTimeoutMs: o.helloTimeoutMs };
    this.drainTimeoutMs = o.drainTimeoutMs;
    this.operator = o.operator ?? null;
    this.auth = new Authenticator(authOptionsOf(o.security ?? {}));
    this.audit = o.audit ?? NO_AUDIT;
    this.stack = stack ?? null;
    if (stack !== undefined) {
      stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, this.forwarder.handlePacket);
      stack.setTransportProtocolHandler(ICMPV6_PROTOCOL_NUMBER, this.forwarder.handlePacket);
    }
  }

  /** Creates the service and starts listening. */
  static async start(o: ServiceOptions): Promise<EchoService> {
    const s = new EchoService(o);
    await s.listen();
    return s;
  }

  private async listen(): Promise<void> {
    this.listening = await listen(
      this.o.listen,
      {
        connect: (call, principal, trace) => this.connect(call, principal, trace),
        getStats: () => this.snapshot(),
        watchStats: (call) =>
          watchStats(
            call,
            () => this.snapshot(),
            (stop) => {
              this.watchers.add(stop);
              return () => this.watchers.delete(stop);
            },
          ),
        listSessions: () => this.listSessions(),
        ping: (call) => this.ping(call),
        admin: this.adminHandlers(),
      },
      { auth: this.auth, tls: this.o.security?.tls, audit: this.audit },
      this.o.grpcOptions,
      this.o.calls ?? null,
    );
  }

  /**
   * A reload's decision options: requests received from now on get the new deadline, default
   * actions (the Forwarder's overflow backstop's on-overload included) follow the new policy.
   * Sessions already up keep running; new ones see the new values in their Welcome.
   */
  apply(s: DecisionSettings): null {
    this.dispatcher.apply(s);
    this.forwarder.setOverflowAction(s.onOverload);
    return null;
  }

  /**
   * A reload's certificates: new connections get them. Refused, with nothing changed, when
   * the new key and certificate do not load.
   */
  applyTls(tls: TlsFiles): ServiceError | null {
    const credentials = this.listening?.credentials;
    if (credentials === undefined) return null;
    const why = rotateTls(credentials, tls);
    return why === null
      ? null
      : serviceError(
          "invalidArgument",
          `tlsCert / tlsKey: the new certificate does not load: ${why}`,
        );
  }

  /**
   * A reload's tokens, authorization file and client-certificate requirement: calls from now on
   * are checked against them; sessions already authenticated keep running.
   */
  applySecurity(o: AuthOptions): null {
    this.auth.update(o);
    return null;
  }

  /** GetDecisionStats: decision times over the window, overall and per decide session. */
  decisionStats(r: GetDecisionStatsRequest): GetDecisionStatsResponse | ServiceError {
    const asked = msOfDuration(r.window);
    const W = DECISION_WINDOW;
    const windowMs = asked === 0 ? W.defaultMs : asked;
    if (windowMs < W.minMs || windowMs > W.maxMs)
      return serviceError(
        "invalidArgument",
        `window: between ${W.minMs} and ${W.maxMs} ms, got ${windowMs} ms`,
      );
    const wire = (l: LatencySummary): DecisionLatency => ({
      decisions: BigInt(l.decisions),
      p50: protoTimeOfMs(l.p50),
      p99: protoTimeOfMs(l.p99),
      max: protoTimeOfMs(l.max),
    });
    const counts = this.dispatcher.flowCounts();
    const sessions = [...counts].map(([slot, c]) => ({
      sessionId: slot.meta.sessionId,
      latency: wire(this.latencies.session(slot.meta.sessionId, windowMs)),
      affinityFlows: c.affinity,
      flowVerdicts: c.verdicts,
    }));
    this.latencies.retain(new Set(sessions.map((x) => x.sessionId)));
    return {
      window: protoTimeOfMs(windowMs),
      latency: wire(this.latencies.overall(windowMs)),
      sessions,
    };
  }

  private adminHandlers(): AdminHandlers {
    const network = (): NetworkControl | ServiceError =>
      this.operator?.network ??
      serviceError("failedPrecondition", "this service has no netstack to change");
    // Each change is audited with the network before and after it. The address or prefix text
    // is bounded like a filter's prefixes (it is quoted back in errors and the log).
    const change = async (
      who: Caller,
      field: string,
      text: string,
      what: string,
      fn: (n: NetworkControl) => Promise<NetworkChange | ServiceError>,
    ): Promise<NetworkChange | ServiceError> => {
      if (text.length > MAX_PREFIX_TEXT)
        return serviceError(
          "invalidArgument",
          `${field}: at most ${MAX_PREFIX_TEXT} characters, got ${text.length}`,
        );
      const n = network();
      if (isServiceError(n)) return n;
      const before = n.state();
      const r = await fn(n);
      if (!isServiceError(r)) this.audit.adminChange(who, what, before, r.network);
      return r;
    };
    return {
      reload: async (who) => {
        if (this.operator === null)
          return serviceError("failedPrecondition", "this service has no configuration to reload");
        const r = await this.operator.reload();
        if (isServiceError(r)) return r;
        const side = (k: "oldValue" | "newValue") =>
          Object.fromEntries(r.map((c) => [c.key, c[k]]));
        if (r.length > 0) this.audit.adminChange(who, "reload", side("oldValue"), side("newValue"));
        return { changes: r };
      },
      getDecisionStats: (r) => this.decisionStats(r),
      getNetwork: () => {
        const n = network();
        return isServiceError(n) ? n : n.state();
      },
      addAddress: (r, who) =>
        change(who, "address", r.address, `addr add ${r.address}`, (n) =>
          n.addAddress(r.address, r.nic),
        ),
      removeAddress: (r, who) =>
        change(who, "address", r.address, `addr del ${r.address}`, (n) =>
          n.removeAddress(r.address, r.nic),
        ),
      addRoute: (r, who) =>
        change(who, "destination", r.destination, `route add ${r.destination}`, (n) =>
          n.addRoute(r.destination, r.nic),
        ),
      removeRoute: (r, who) =>
        change(who, "destination", r.destination, `route del ${r.destination}`, (n) =>
          n.removeRoute(r.destination, r.nic),
        ),
      setPromiscuous: (r, who) =>
        change(who, "on", "", `promiscuous ${r.on ? "on" : "off"}`, (n) =>
          n.setPromiscuous(r.on, r.nic),
        ),
    };
  }

  /** `host:port` with the bound port, or `unix:/path`. */
  get address(): string {
    return this.listening?.address ?? "";
  }

  /**
   * Every service counter by dotted name, the Forwarder's overflow included (counted under
   * the action the Forwarder gave it).
   */
  counters(): Record<string, number> {
    const c = this.dispatcher.counters.flatten();
    c[`service.outcomes.${this.forwarder.overflowAction}.forwarderOverflow`] +=
      this.forwarder.stats.overflow;
    return c;
  }

  gauges(): Record<string, number> {
    const held = this.dispatcher.syntheticHeld;
    return {
      "service.inFlight": this.dispatcher.pendingCount,
      "service.sessions": this.dispatcher.sessions.length,
      "service.observers": this.dispatcher.observers.length,
      "service.flowVerdicts": this.dispatcher.flowVerdicts,
      "service.synthetic.held": held.records,
      "service.synthetic.heldBytes": held.bytes,
    };
  }

  /** GetStats: every counter and gauge the registry holds (default: the service's own). */
  snapshot(): GetStatsResponse {
    const s = this.o.stats?.() ?? { counters: this.counters(), gauges: this.gauges() };
    const counters: Record<string, bigint> = {};
    for (const [k, v] of Object.entries(s.counters)) counters[k] = BigInt(Math.max(0, v));
    const gauges: Record<string, bigint> = {};
    for (const [k, v] of Object.entries(s.gauges)) gauges[k] = BigInt(Math.trunc(v));
    return { takenAt: protoTimeOfMs(Date.now()), counters, gauges };
  }

  listSessions(): ListSessionsResponse {
    const sessions: Session[] = [];
    for (const s of this.sessions) {
      const info = s.info();
      if (info !== null) sessions.push(info);
    }
    return { sessions };
  }

  private ping(call: ServerWritableStream<PingRequest, PingEvent>): void {
    const stack = this.stack;
    const plan =
      this.closed || this.dispatcher.draining
        ? serviceError("shuttingDown", "the server is shutting down")
        : stack === null
          ? serviceError("failedPrecondition", "no netstack is installed")
          : planPing(call.request, stack);
    if ("kind" in plan || stack === null) call.emit("error", toGrpcError(plan as ServiceError));
    else runPing(call, stack, plan);
  }

  private connect(call: ConnectCall, principal: Principal, trace: CallTrace | null): void {
    if (this.closed || this.dispatcher.draining) {
      call.emit("error", toGrpcError(serviceError("shuttingDown", "the server is shutting down")));
      return;
    }
    const s = new ConnectSession(
      call,
      this.dispatcher,
      this.limits,
      this.sessionHooks,
      principal,
      trace,
    );
    this.sessions.add(s);
  }

  /**
   * The drain: sessions get Draining and no new requests; held requests are decided
   * or take their default within `timeoutMs`; what is still held then gets on-disconnect when
   * its session is cut. Then the server stops. Returns whether every request was decided in
   * time.
   */
  async drain(timeoutMs = this.drainTimeoutMs): Promise<boolean> {
    if (this.closed) return true;
    this.setServing(false);
    for (const s of [...this.sessions]) s.serverDraining(timeoutMs);
    this.dispatcher.beginDrain();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const inTime = await Promise.race([
      this.dispatcher.whenIdle().then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    await this.close();
    return inTime;
  }

  /** grpc.health.v1: SERVING until the drain starts, then NOT_SERVING (overall and the service). */
  private setServing(serving: boolean): void {
    const status = serving ? "SERVING" : "NOT_SERVING";
    this.listening?.health.setStatus("", status);
    this.listening?.health.setStatus(SERVICE_NAME, status);
  }

  /** Ends every session (held requests: on-disconnect) and stops the server. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.setServing(false);
    this.dispatcher.beginDrain();
    for (const stop of [...this.watchers]) stop();
    for (const s of [...this.sessions])
      s.finish(serviceError("shuttingDown", "the server shut down"));
    if (this.listening === null) return;
    await shutdown(this.listening.server, 1000);
    if (this.address.startsWith("unix:")) {
      const path = this.address.slice("unix:".length);
      if (existsSync(path)) unlinkSync(path);
    }
  }
}
