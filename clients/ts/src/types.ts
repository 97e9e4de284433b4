/** The public option and result types of `connect()`. */
import type { BackoffOptions } from "./backoff.js";
import type { Welcome } from "./gen/icmpfwd/v1/forwarder.js";
import type { Logger } from "./log.js";
import type { PolicyRequest } from "./request.js";
import type { Resolver } from "./targets.js";

export type ActionName = "reply" | "consume" | "fallthrough";

export interface Decision {
  action: ActionName;
  /** Decide the rest of the flow (source, destination, ident) for this long without asking. */
  applyToFlowMs?: number;
  /**
   * With action "consume": send a SyntheticReply for the request after this delay (a Promise:
   * once it settles, after the delay it resolves to); with `error`, an ICMP error instead.
   */
  syntheticReply?: SyntheticAnswer;
  /**
   * With action "consume", instead of `syntheticReply`: the answer once it is known (the relay's:
   * what really came back); null sends nothing.
   */
  awaitSynthetic?: PromiseLike<SyntheticAnswer | null>;
}

/** The ICMP errors a synthetic answer may be (the service's SyntheticErrorType). */
export type SyntheticErrorName =
  | "time-exceeded"
  | "net-unreachable"
  | "host-unreachable"
  | "protocol-unreachable"
  | "port-unreachable"
  | "admin-prohibited";

/** A synthetic answer: an Echo Reply (optionally with another payload), or an ICMP error. */
export interface SyntheticAnswer {
  delayMs?: number | PromiseLike<number>;
  payload?: Uint8Array;
  /** Instead of the Echo Reply: this ICMP error, from `source` (a router's address). */
  error?: { type: SyntheticErrorName; source: string };
}

export type HandlerResult = ActionName | Decision;
export type Handler = (req: PolicyRequest) => HandlerResult | Promise<HandlerResult>;

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
  /** The name checked in the server certificate (default: the target's host). */
  serverName?: string;
}

export interface ConnectOptions {
  /**
   * A comma-separated list of `host:port`, `[v6]:port`, `unix:/path` and `dns:///name:port`
   * (every address of the name, one session each). Default: env ICMPFWD_TARGET, else
   * 127.0.0.1:50051.
   */
  target?: string;
  /** How often `dns:///` targets are re-resolved (default 30 000 ms). */
  resolveIntervalMs?: number;
  /** Resolves `dns:///` names (default: getaddrinfo, A and AAAA). */
  resolver?: Resolver;
  name?: string;
  mode?: "decide" | "observe";
  filter?: FilterOptions;
  maxInFlight?: number;
  payloadBytes?: number;
  /** Sent as `authorization: Bearer TOKEN`. */
  token?: string;
  tls?: TlsOptions;
  /** Aborting drains every session (Drain, wait for in-flight, end) and stops reconnecting. */
  signal?: AbortSignal;
  handler: Handler;
  onLog?: Logger;
  backoff?: Partial<BackoffOptions>;
  /** Called on every Welcome (after every (re)connect, of every session). */
  onWelcome?: (w: Welcome, target: string) => void;
  /** How long an abort waits for a stream to end before cancelling it (default 5000 ms). */
  drainTimeoutMs?: number;
}

/** Counters summed over every session the client has had. */
export interface ClientStats {
  decided: Record<ActionName, number>;
  /** Handler errors (each decided fallthrough). */
  errors: number;
  /** Requests seen in observe mode. */
  observed: number;
  /** Welcomes received. */
  sessions: number;
}

/** One service the client keeps a session with. */
export interface ServiceState {
  /** The grpc-js target (for a `dns:///` element: the resolved `address:port`). */
  target: string;
  connected: boolean;
  /** The current Welcome's session id, or null between streams. */
  session: string | null;
}

export interface PolicyClient {
  readonly stats: ClientStats;
  /** True while at least one session is between its Welcome and the end of its stream. */
  readonly connected: boolean;
  /** The services the client has a session for now (dns:/// addresses come and go). */
  services(): ServiceState[];
  /**
   * Settles when every session has ended: resolves after an abort, rejects on a permanent error
   * of any session (authentication, a bad Hello), after draining the others.
   */
  readonly done: Promise<void>;
  /** Drains and stops (like aborting the signal); resolves with `done`. */
  drain(): Promise<void>;
}
