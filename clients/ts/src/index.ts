/**
 * @icmpfwd/client: a policy client for the icmpfwd decision service. `connect({ handler })` keeps
 * one Connect session with every service of its target list (a `dns:///` element: every address
 * of the name, re-resolved), says Hello, calls the handler for every Echo Request and sends the
 * verdicts back in batches; each session reconnects on its own with jittered backoff, and all
 * drain cleanly when the AbortSignal fires.
 */
import { type BackoffOptions, DEFAULT_BACKOFF } from "./backoff.js";
import { type Logger, stderrLogger } from "./log.js";
import type { PolicyRequest } from "./request.js";
import { PolicyClientError, type Session, type SessionContext, startSession } from "./session.js";
import {
  addressTarget,
  DEFAULT_RESOLVE_INTERVAL_MS,
  defaultTarget,
  parseTargets,
  systemResolver,
  type TargetSpec,
} from "./targets.js";
import type {
  ClientStats,
  ConnectOptions,
  Decision,
  PolicyClient,
  SyntheticErrorName,
} from "./types.js";

export { type BackoffOptions, backoffDelay, DEFAULT_BACKOFF } from "./backoff.js";
export type { Welcome } from "./gen/icmpfwd/v1/forwarder.js";
export { jsonLogger, type Logger, type LogLevel, stderrLogger } from "./log.js";
export { formatAddress, type PolicyRequest, toPolicyRequest, traceIdOf } from "./request.js";
export { PolicyClientError, PROTOCOL_VERSION } from "./session.js";
export {
  DEFAULT_RESOLVE_INTERVAL_MS,
  DEFAULT_TARGET,
  defaultTarget,
  parseTargets,
  type Resolver,
  systemResolver,
  TargetError,
  type TargetSpec,
} from "./targets.js";
export type {
  ActionName,
  ClientStats,
  ConnectOptions,
  Decision,
  FilterOptions,
  Handler,
  HandlerResult,
  PolicyClient,
  ServiceState,
  SyntheticAnswer,
  SyntheticErrorName,
  TlsOptions,
} from "./types.js";

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

/**
 * Consume the request now, and answer it later with an ICMP error from `source` (a router's
 * address on the real path) instead of an Echo Reply.
 */
export function syntheticError(
  _req: PolicyRequest,
  o: { type: SyntheticErrorName; source: string; delayMs?: number | PromiseLike<number> },
): Decision {
  return {
    action: "consume",
    syntheticReply: { delayMs: o.delayMs ?? 0, error: { type: o.type, source: o.source } },
  };
}

/** One running session and the target-list elements that want it. */
interface Member {
  session: Session;
  owners: Set<number>;
}

/**
 * Opens a session with every service of `o.target` (and keeps them open) until `o.signal`
 * aborts. Throws a TargetError for a malformed target list.
 */
export function connect(o: ConnectOptions): PolicyClient {
  const specs: TargetSpec[] = parseTargets(o.target ?? defaultTarget());
  const log: Logger = o.onLog ?? stderrLogger;
  const backoff: BackoffOptions = { ...DEFAULT_BACKOFF, ...o.backoff };
  const resolver = o.resolver ?? systemResolver;
  const resolveIntervalMs = o.resolveIntervalMs ?? DEFAULT_RESOLVE_INTERVAL_MS;
  const stats: ClientStats = {
    decided: { reply: 0, consume: 0, fallthrough: 0 },
    errors: 0,
    observed: 0,
    sessions: 0,
  };
  const internal = new AbortController();
  const signal = o.signal ? AbortSignal.any([o.signal, internal.signal]) : internal.signal;
  const ctx: SessionContext = { o, stats, log, backoff, signal };
  /** By grpc-js target: one session per service, however many list elements name it. */
  const members = new Map<string, Member>();
  const running = new Set<Promise<void>>();
  let failure: PolicyClientError | null = null;
  let allEnded: (() => void) | null = null;

  const stopWhenIdle = (): void => {
    if (running.size === 0 && allEnded !== null && (signal.aborted || failure !== null)) allEnded();
  };

  const add = (owner: number, target: string, serverName?: string): void => {
    const m = members.get(target);
    if (m !== undefined) {
      m.owners.add(owner);
      return;
    }
    const session = startSession(ctx, target, serverName);
    members.set(target, { session, owners: new Set([owner]) });
    const ended = session.done.then(
      () => {},
      (e: unknown) => {
        // A refused session is the whole client's error: drain the others and stop.
        if (failure === null)
          failure = e instanceof PolicyClientError ? e : new PolicyClientError(String(e), 2);
        log("error", "session refused; stopping", { target, error: failure.message });
        internal.abort();
      },
    );
    running.add(ended);
    void ended.finally(() => {
      running.delete(ended);
      if (members.get(target)?.session === session) members.delete(target);
      stopWhenIdle();
    });
  };

  /** Brings a dns:/// element's sessions in line with what its name resolves to now. */
  const resolveOnce = async (i: number, spec: TargetSpec & { kind: "dns" }): Promise<void> => {
    let addresses: string[];
    try {
      addresses = await resolver(spec.host);
    } catch (e) {
      // A failed resolution changes nothing: the sessions we have keep going.
      log("warn", "resolving failed; keeping the current sessions", {
        target: spec.text,
        error: e instanceof Error ? e.message : String(e),
      });
      return;
    }
    if (signal.aborted) return;
    const want = new Set(addresses.map((a) => addressTarget(a, spec.port)));
    for (const [target, m] of members) {
      if (!m.owners.has(i) || want.has(target)) continue;
      m.owners.delete(i);
      if (m.owners.size === 0) {
        log("info", "address gone; draining its session", { target, name: spec.text });
        m.session.drain();
        members.delete(target);
      }
    }
    for (const target of want) {
      if (!members.has(target) || !members.get(target)!.owners.has(i)) {
        if (!members.has(target)) log("info", "address added", { target, name: spec.text });
        add(i, target, spec.host);
      }
    }
  };

  const timers: NodeJS.Timeout[] = [];
  const done = new Promise<void>((resolve, reject) => {
    allEnded = () => (failure === null ? resolve() : reject(failure));
  });
  const onAbort = (): void => {
    for (const t of timers) if (t !== undefined) clearTimeout(t);
    stopWhenIdle();
  };
  if (signal.aborted) queueMicrotask(onAbort);
  else signal.addEventListener("abort", onAbort, { once: true });
  specs.forEach((spec, i) => {
    if (spec.kind === "service") {
      add(i, spec.target);
      return;
    }
    // Each round starts after the previous one ended: a slow resolver never overlaps itself.
    const round = (): void => {
      void resolveOnce(i, spec).finally(() => {
        if (signal.aborted) return;
        const t = setTimeout(round, resolveIntervalMs);
        timers[i] = t;
      });
    };
    round();
  });

  // `done` is the caller's to observe; never an unhandled rejection from here.
  done.catch(() => {});
  return {
    stats,
    get connected() {
      return [...members.values()].some((m) => m.session.state.connected);
    },
    services: () => [...members.values()].map((m) => ({ ...m.session.state })),
    done,
    drain() {
      internal.abort();
      return done;
    },
  };
}
