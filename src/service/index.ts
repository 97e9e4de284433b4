/**
 * The gRPC decision service (DESIGN.md §4): a Forwarder whose handler is the dispatcher, the
 * grpc-js server whose Connect streams are the decide sessions, the counters, and the drain.
 */
import { existsSync, unlinkSync } from "node:fs";
import type { ChannelOptions, Server, ServerWritableStream } from "@grpc/grpc-js";
import type { HealthImplementation } from "grpc-health-check";
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
import { sendSyntheticEchoReply } from "../netstack/icmp/synthetic.js";
import type { Stack } from "../netstack/stack.js";
import type { Stats } from "../netstack/stats.js";
import type { MetricSources } from "../telemetry/metrics.js";
import { msOfDuration, planPing, runPing, watchStats } from "./admin.js";
import { Authenticator, type AuthzFile, type Principal } from "./auth.js";
import type { Scheduler } from "./deadlines.js";
import { DecisionLatencies, type LatencySummary } from "./decision-latency.js";
import { Dispatcher, type DispatcherOptions, type FailurePolicy } from "./dispatcher.js";
import { isServiceError, type ServiceError, serviceError, toGrpcError } from "./errors.js";
import type { NetworkChange, NetworkControl } from "./network.js";
import type { RequestTelemetry } from "./request-telemetry.js";
import {
  type AdminHandlers,
  listen,
  rotateTls,
  SERVICE_NAME,
  shutdown,
  type TlsFiles,
} from "./server.js";
import { type ConnectCall, ConnectSession, type SessionLimits } from "./session.js";
import { protoTimeOfMs } from "./wire.js";

export { type AuthzFile, loadAuthz } from "./auth.js";
export type { Scheduler } from "./deadlines.js";
export { systemScheduler } from "./deadlines.js";
export { Dispatcher, FAIL_OPEN, type FailurePolicy } from "./dispatcher.js";
export type { OutcomeAction, OutcomeCause, PolicyAction } from "./outcomes.js";
export type { TlsFiles } from "./server.js";
export { PROTOCOL_VERSION } from "./session.js";

/** GetDecisionStats: the window when none is given, and its bounds. */
export const DECISION_WINDOW = { defaultMs: 10_000, minMs: 1000, maxMs: 60_000 } as const;

/** What the EchoAdmin RPCs beyond the service itself act on (set by serve.ts). */
export interface Operator {
  /** Re-reads the configuration and applies what may change (SIGHUP does the same). */
  reload(): Promise<ConfigChange[] | ServiceError>;
  /** The netstack's addresses, routes and NIC modes; null: not changeable here. */
  network: NetworkControl | null;
}

/** What a reload may change in the service itself. */
export interface LiveSettings {
  deadlineMs: number;
  policy: FailurePolicy;
  security: SecurityOptions;
}

export const DEFAULT_LIMITS: SessionLimits = {
  defaultMaxInFlight: 1024,
  maxInFlightCap: 65536,
  maxBatch: 128,
  maxBatchBytes: 1 << 20,
  maxPayloadBytes: 65535,
  observerQueue: 1024,
};

/** Who may call, and over what (README "Security"). */
export interface SecurityOptions {
  /** A bearer token (identity "token"). */
  token?: string;
  /** Identities → modes and destination prefixes; tokens → identities. */
  authz?: AuthzFile;
  /** TLS (and mTLS with clientCa) from PEM bytes. */
  tls?: TlsFiles;
}

export interface ServiceOptions {
  /** `host:port` (port 0: any free port) or `unix:/path`. */
  listen: string;
  deadlineMs: number;
  policy: FailurePolicy;
  temporaryReply?: boolean;
  /** How long a server drain waits for held requests (default 5000 ms). */
  drainTimeoutMs?: number;
  limits?: Partial<SessionLimits>;
  /** Passed to the dispatcher (table sizes, pending bound). */
  dispatcher?: Omit<DispatcherOptions, "deadlineMs" | "policy" | "temporaryReply" | "scheduler">;
  /** The Forwarder's held-packet bound (default: the pending bound plus headroom). */
  forwarderMaxHeld?: number;
  scheduler?: Scheduler;
  grpcOptions?: ChannelOptions;
  /** More counters for GetStats (the netstack's). */
  extraCounters?: () => Record<string, number>;
  /** How long after a CONSUME verdict a SyntheticReply is honoured (default 10 s; 0: never). */
  syntheticWindowMs?: number;
  security?: SecurityOptions;
  /** Span and decision-time hooks (src/telemetry); none by default. */
  telemetry?: RequestTelemetry;
}

export class EchoService {
  readonly dispatcher: Dispatcher;
  /** The handler to install for ICMPv4 and ICMPv6 (see install()). */
  readonly forwarder: Forwarder;
  readonly drainTimeoutMs: number;
  private readonly sessions = new Set<ConnectSession>();
  private readonly watchers = new Set<() => void>();
  private stack: Stack | null = null;
  private health: HealthImplementation | null = null;
  private readonly limits: SessionLimits;
  private server: Server | null = null;
  private credentials: import("@grpc/grpc-js").ServerCredentials | null = null;
  private auth: Authenticator | null = null;
  /** Recent decision times (GetDecisionStats), in front of the telemetry hooks. */
  readonly latencies: DecisionLatencies;
  /** Reload and network changes (EchoAdmin); null until serve.ts sets it. */
  operator: Operator | null = null;
  private listenAddress = "";
  private closed = false;

  constructor(private readonly o: ServiceOptions) {
    this.dispatcher = new Dispatcher({
      ...o.dispatcher,
      synthetic: { ...o.dispatcher?.synthetic, windowMs: o.syntheticWindowMs ?? 10_000 },
      deadlineMs: o.deadlineMs,
      policy: o.policy,
      temporaryReply: o.temporaryReply,
      scheduler: o.scheduler,
    });
    const maxPending = o.dispatcher?.maxPending ?? 65536;
    // The dispatcher bounds what it holds first; the Forwarder's own bound is a backstop that
    // still honours on-overload.
    this.forwarder = new Forwarder(this.dispatcher.handle, {
      maxHeld: o.forwarderMaxHeld ?? maxPending + 4096,
      onOverflow: o.policy.onOverload,
    });
    this.latencies = new DecisionLatencies(o.telemetry ?? null);
    this.dispatcher.telemetry = this.latencies;
    this.limits = { ...DEFAULT_LIMITS, ...o.limits };
    this.drainTimeoutMs = o.drainTimeoutMs ?? 5000;
  }

  /** Creates the service and starts listening. */
  static async start(o: ServiceOptions): Promise<EchoService> {
    const s = new EchoService(o);
    const sec = o.security ?? {};
    const auth = new Authenticator({
      token: sec.token,
      authz: sec.authz,
      clientCertificates: sec.tls?.clientCa !== undefined,
    });
    const l = await listen(
      o.listen,
      {
        connect: (call, principal) => s.connect(call, principal),
        getStats: () => s.snapshot(),
        watchStats: (call) =>
          watchStats(
            call,
            () => s.snapshot(),
            (stop) => {
              s.watchers.add(stop);
              return () => s.watchers.delete(stop);
            },
          ),
        listSessions: () => s.listSessions(),
        ping: (call) => s.ping(call),
        admin: s.adminHandlers(),
      },
      { auth, tls: sec.tls },
      o.grpcOptions,
    );
    s.server = l.server;
    s.credentials = l.credentials;
    s.auth = auth;
    s.health = l.health;
    s.listenAddress = l.address;
    return s;
  }

  /**
   * Applies a reload: TLS certificates first (refused, with nothing changed, when the new key
   * and certificate do not load), then tokens and authorization, then the deadline and the
   * default actions. Sessions already up keep running; new ones see the new values.
   */
  reconfigure(s: LiveSettings): ServiceError | null {
    const tls = s.security.tls;
    if (tls !== undefined && this.credentials !== null) {
      const why = rotateTls(this.credentials, tls);
      if (why !== null)
        return serviceError(
          "invalidArgument",
          `tlsCert / tlsKey: the new certificate does not load: ${why}`,
        );
    }
    this.auth?.update({
      token: s.security.token,
      authz: s.security.authz,
      clientCertificates: tls?.clientCa !== undefined,
    });
    this.dispatcher.apply({ deadlineMs: s.deadlineMs, policy: s.policy });
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
    const change = async (
      fn: (n: NetworkControl) => Promise<NetworkChange | ServiceError>,
    ): Promise<NetworkChange | ServiceError> => {
      const n = network();
      return isServiceError(n) ? n : fn(n);
    };
    return {
      reload: async () => {
        if (this.operator === null)
          return serviceError("failedPrecondition", "this service has no configuration to reload");
        const r = await this.operator.reload();
        return isServiceError(r) ? r : { changes: r };
      },
      getDecisionStats: (r) => this.decisionStats(r),
      getNetwork: () => {
        const n = network();
        return isServiceError(n) ? n : n.state();
      },
      addAddress: (r) => change((n) => n.addAddress(r.address, r.nic)),
      removeAddress: (r) => change((n) => n.removeAddress(r.address, r.nic)),
      addRoute: (r) => change((n) => n.addRoute(r.destination, r.nic)),
      removeRoute: (r) => change((n) => n.removeRoute(r.destination, r.nic)),
      setPromiscuous: (r) => change((n) => n.setPromiscuous(r.on, r.nic)),
    };
  }

  /** `host:port` with the bound port, or `unix:/path`. */
  get address(): string {
    return this.listenAddress;
  }

  /** Makes the service the stack's ICMP default handler, for both families. */
  install(stack: Stack): void {
    this.stack = stack;
    this.dispatcher.synthesizer = (copy, payload) =>
      sendSyntheticEchoReply(stack, copy, payload === undefined ? {} : { payload });
    stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, this.forwarder.handlePacket);
    stack.setTransportProtocolHandler(ICMPV6_PROTOCOL_NUMBER, this.forwarder.handlePacket);
  }

  /** Every service counter by dotted name, the Forwarder's overflow included. */
  counters(): Record<string, number> {
    const c = this.dispatcher.counters.flatten();
    c[`service.outcomes.${this.o.policy.onOverload}.forwarderOverflow`] +=
      this.forwarder.stats.overflow;
    return c;
  }

  /** What the metrics read (src/telemetry/metrics.ts). */
  metricSources(stats: Stats): MetricSources {
    const d = this.dispatcher;
    return {
      outcomes: d.counters,
      forwarderOverflow: () => ({
        action: this.o.policy.onOverload,
        ipv4: this.forwarder.stats.overflow - this.forwarder.stats.overflowIpv6,
        ipv6: this.forwarder.stats.overflowIpv6,
      }),
      inFlight: () => d.pendingCount,
      sessions: () => ({ decide: d.sessions.length, observe: d.observers.length }),
      stats,
    };
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

  /** GetStats: the netstack's counters (extraCounters), the service's, and the gauges. */
  snapshot(): GetStatsResponse {
    const counters: Record<string, bigint> = {};
    const all = { ...this.o.extraCounters?.(), ...this.counters() };
    for (const [k, v] of Object.entries(all)) counters[k] = BigInt(Math.max(0, v));
    const gauges: Record<string, bigint> = {};
    for (const [k, v] of Object.entries(this.gauges())) gauges[k] = BigInt(Math.trunc(v));
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

  private connect(call: ConnectCall, principal: Principal): void {
    if (this.closed || this.dispatcher.draining) {
      call.emit("error", toGrpcError(serviceError("shuttingDown", "the server is shutting down")));
      return;
    }
    const s = new ConnectSession(
      call,
      this.dispatcher,
      this.limits,
      (ended) => this.sessions.delete(ended),
      principal,
    );
    this.sessions.add(s);
  }

  /**
   * DESIGN.md §4's drain: sessions get Draining and no new requests; held requests are decided
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
    this.health?.setStatus("", status);
    this.health?.setStatus(SERVICE_NAME, status);
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
    if (this.server !== null) await shutdown(this.server, 1000);
    if (this.listenAddress.startsWith("unix:")) {
      const path = this.listenAddress.slice("unix:".length);
      if (existsSync(path)) unlinkSync(path);
    }
  }
}
