/**
 * The dispatcher: the service's Forwarder handler. Each Echo Request goes to one decide session
 * (flow affinity first, otherwise least in-flight) and waits in the pending map under one
 * deadline structure; the first of {verdict, deadline, no session, overload, session end} gives
 * its outcome, exactly once; anything later is rejected and counted.
 */
import { Action } from "../gen/icmpfwd/v1/forwarder.js";
import { type EchoRequestFields, echoRequestFields } from "../netstack/icmp/echo-fields.js";
import type { ForwarderRequest } from "../netstack/icmp/forwarder.js";
import { Decision } from "../netstack/transport.js";
import { type DeadlineEntry, Deadlines, type Scheduler, systemScheduler } from "./deadlines.js";
import { type EndedRequest, EndedRequests } from "./ended-requests.js";
import type { RejectionKind } from "./errors.js";
import type { SessionFilter } from "./filter.js";
import { FlowAffinity, type FlowOwner, FlowVerdicts, flowKey } from "./flow-table.js";
import { type ObserverSink, type ObserverSlot, Observers } from "./observers.js";
import { type OutcomeAction, type OutcomeCause, Outcomes, type PolicyAction } from "./outcomes.js";
import { PendingTable } from "./pending-table.js";
import type { DecidingSession, RequestTelemetry, StartedTrace } from "./request-telemetry.js";
import type { SyntheticLimits } from "./synthetic-records.js";
import {
  foreignRequest,
  type RequestHistory,
  type Synthesizer,
  type SyntheticAnswer,
  SyntheticReplies,
} from "./synthetic-replies.js";
import type { Verdicts } from "./wire.js";

export type { ObserverSink, ObserverSlot } from "./observers.js";
export type { Synthesizer } from "./synthetic-replies.js";

/** The default actions of the failure policy; each fallthrough (fail-open) or consume. */
export interface FailurePolicy {
  onTimeout: PolicyAction;
  onNoClient: PolicyAction;
  onOverload: PolicyAction;
  onDisconnect: PolicyAction;
}

export const FAIL_OPEN: Readonly<FailurePolicy> = Object.freeze({
  onTimeout: "fallthrough",
  onNoClient: "fallthrough",
  onOverload: "fallthrough",
  onDisconnect: "fallthrough",
});

/** Most requests waiting for verdicts at once unless DispatcherOptions.maxPending says. */
export const DEFAULT_MAX_PENDING = 65536;

export interface DispatcherOptions {
  /** Each request's deadline from its receive time (1 ms – 10 s). */
  deadlineMs: number;
  policy: FailurePolicy;
  /** How long after a CONSUME verdict a SyntheticReply is honoured (0: never). */
  syntheticWindowMs: number;
  /**
   * `--temporary-reply`: a fallthrough outcome for a temporary destination calls reply(), so
   * fallthrough keeps meaning "what serve does without a policy client".
   */
  temporaryReply?: boolean;
  /** Most requests waiting for verdicts at once; beyond it, on-overload (default 65536). */
  maxPending?: number;
  /** Flow verdict table size (default 16384). */
  flowTableSize?: number;
  /** Flow affinity table size (default 65536). */
  affinityTableSize?: number;
  /** Longest apply_to_flow_ms honoured; longer ones are cut to it (default 10 minutes). */
  maxFlowMs?: number;
  /** A request moves to another session only with at least this much budget left (default 1). */
  minRedispatchBudgetMs?: number;
  /** Bounds on the copies kept for synthetic replies (default 65,536 copies, 64 MiB). */
  synthetic?: Partial<Omit<SyntheticLimits, "windowMs">>;
  /** Sends a synthetic reply (from the stack); without one, synthetic replies find no route. */
  synthesizer?: Synthesizer;
  /** Spans and decision-time metrics (src/telemetry); none by default. */
  telemetry?: RequestTelemetry;
  scheduler?: Scheduler;
}

/**
 * The decision options a reload may change, named as the configuration names them: a reload
 * hands the dispatcher exactly these keys (DECISION_SETTING_KEYS), so a new live decision
 * option is declared here and in the configuration schema, and nowhere else.
 */
export interface DecisionSettings {
  deadline: number;
  onTimeout: PolicyAction;
  onNoClient: PolicyAction;
  onOverload: PolicyAction;
  onDisconnect: PolicyAction;
}

export const DECISION_SETTING_KEYS = [
  "deadline",
  "onTimeout",
  "onNoClient",
  "onOverload",
  "onDisconnect",
] as const satisfies readonly (keyof DecisionSettings)[];

/** What the dispatcher keeps of DecisionSettings. */
interface DispatcherSettings {
  deadlineMs: number;
  policy: FailurePolicy;
}

/** The deadline and failure policy of DecisionSettings, as the dispatcher takes them. */
export function decisionOf(s: DecisionSettings): DispatcherSettings {
  return {
    deadlineMs: s.deadline,
    policy: {
      onTimeout: s.onTimeout,
      onNoClient: s.onNoClient,
      onOverload: s.onOverload,
      onDisconnect: s.onDisconnect,
    },
  };
}

/** What the dispatcher needs from the transport side of a session. */
export interface SessionSink {
  /** Queue the event of a request just assigned to this session; `nowMs` is the time now. */
  send(request: PendingRequest, nowMs: number): void;
  /** Tell the client a verdict (or message) was refused. */
  reject(requestId: bigint, kind: RejectionKind, message: string): void;
  /** The session drains and has nothing left in flight: it may end its stream. */
  idle(): void;
  /** False while the stream's last write() said to wait for 'drain': it gets nothing new. */
  readonly writable: boolean;
}

/** A session as telemetry names it before the session says who it is (tests, embedders). */
const UNNAMED: DecidingSession = { sessionId: "", clientName: "", streamLink: undefined };

/** The dispatcher's view of one decide session. */
export class SessionSlot implements FlowOwner {
  inFlight = 0;
  /** No new requests (the client's Drain, or the server's). */
  draining = false;
  closed = false;
  /** Verdicts of this session that gave a request its outcome. */
  decided = 0;
  /**
   * Its in-flight requests, oldest first, linked through the requests themselves (a Set's
   * add/delete per request churned its table).
   */
  first: PendingRequest | null = null;
  last: PendingRequest | null = null;

  constructor(
    /** Unique among the dispatcher's sessions (ended requests and synthetic copies name it). */
    readonly index: number,
    readonly filter: SessionFilter,
    readonly maxInFlight: number,
    readonly sink: SessionSink,
    readonly meta: DecidingSession = UNNAMED,
  ) {}

  /** Whether the session's stream may be written now (its sink says). */
  get writable(): boolean {
    return this.sink.writable;
  }

  canTake(): boolean {
    return this.sink.writable && !this.draining && !this.closed && this.inFlight < this.maxInFlight;
  }

  /** Its in-flight requests, oldest first (a copy). */
  inFlightRequests(): PendingRequest[] {
    const out: PendingRequest[] = [];
    for (let p = this.first; p !== null; p = p.nextInSession) out.push(p);
    return out;
  }
}

/** One Echo Request waiting for its outcome; it is also the handler's answer (a Decision). */
export class PendingRequest extends Decision implements DeadlineEntry {
  queueIndex = -1;
  /** Neighbours in its session's list of in-flight requests. */
  previousInSession: PendingRequest | null = null;
  nextInSession: PendingRequest | null = null;
  trace: StartedTrace = null;

  constructor(
    readonly id: number,
    readonly request: ForwarderRequest,
    readonly fields: EchoRequestFields,
    readonly temporary: boolean,
    readonly flow: string,
    readonly receivedAtMs: number,
    readonly deadlineMs: number,
    public session: SessionSlot,
  ) {
    super();
  }
}

const NO_CLIENT = 0;
const BUSY = 1;
type Choice = SessionSlot | typeof NO_CLIENT | typeof BUSY;

/** The wire's Action as an outcome; null for ACTION_UNSPECIFIED or an unknown number. */
export function outcomeActionOf(a: Action): OutcomeAction | null {
  switch (a) {
    case Action.ACTION_CONSUME:
      return "consume";
    case Action.ACTION_REPLY:
      return "reply";
    case Action.ACTION_FALLTHROUGH:
      return "fallthrough";
    default:
      return null;
  }
}

/** A copy of the settings that the caller cannot change afterwards. */
function frozenSettings(s: DispatcherSettings): Readonly<DispatcherSettings> {
  return Object.freeze({ deadlineMs: s.deadlineMs, policy: Object.freeze({ ...s.policy }) });
}

export class Dispatcher {
  readonly counters = new Outcomes();
  readonly scheduler: Scheduler;
  /** Wall-clock milliseconds at monotonic time 0, for the events' absolute timestamps. */
  readonly wallOffsetMs: number;
  private readonly temporaryReply: boolean;
  private readonly maxPending: number;
  private readonly maxFlowMs: number;
  private readonly minRedispatchBudgetMs: number;
  private readonly pending: PendingTable<PendingRequest>;
  private readonly deadlines: Deadlines<PendingRequest>;
  private readonly ended = new EndedRequests(1 << 16);
  private readonly flows: FlowVerdicts<SessionSlot>;
  private readonly affinity: FlowAffinity<SessionSlot>;
  private readonly slots: SessionSlot[] = [];
  private readonly observing: Observers;
  private readonly synthetic: SyntheticReplies;
  /** Spans and decision-time metrics (src/telemetry); null: none. */
  readonly telemetry: RequestTelemetry | null;
  /** Replaced whole by apply(); the policy in it is frozen. */
  private settings: Readonly<DispatcherSettings>;
  private nextId = 1;
  private nextSessionIndex = 1;
  private rotor = 0;
  private serverDraining = false;
  private idleWaiters: (() => void)[] = [];

  constructor(o: DispatcherOptions) {
    this.settings = frozenSettings(o);
    this.temporaryReply = o.temporaryReply ?? false;
    this.maxPending = o.maxPending ?? DEFAULT_MAX_PENDING;
    this.telemetry = o.telemetry ?? null;
    this.pending = new PendingTable(this.maxPending);
    this.maxFlowMs = o.maxFlowMs ?? 600_000;
    this.minRedispatchBudgetMs = o.minRedispatchBudgetMs ?? 1;
    this.scheduler = o.scheduler ?? systemScheduler;
    this.wallOffsetMs = Date.now() - this.scheduler.nowMs();
    this.flows = new FlowVerdicts(o.flowTableSize ?? 16384);
    this.affinity = new FlowAffinity(o.affinityTableSize ?? 65536);
    this.deadlines = new Deadlines(this.scheduler, (p) =>
      this.finish(p, this.settings.policy.onTimeout, "timeout"),
    );
    this.observing = new Observers(this.counters);
    const history: RequestHistory = {
      pendingSession: (id) => this.pending.get(id)?.session.index ?? null,
      ended: (id) => this.findEnded(id),
      markSyntheticSent: (id) => this.ended.markSyntheticSent(id),
    };
    this.synthetic = new SyntheticReplies(
      { ...o.synthetic, windowMs: o.syntheticWindowMs },
      o.synthesizer ?? null,
      this.counters,
      history,
      this.telemetry,
    );
  }

  /** Each request's deadline from its receive time, for requests received from now on. */
  get deadlineMs(): number {
    return this.settings.deadlineMs;
  }

  /** The default actions taken now. */
  get policy(): Readonly<FailurePolicy> {
    return this.settings.policy;
  }

  /** The synthetic-reply window in ms (0: synthetic replies are off). */
  get syntheticWindowMs(): number {
    return this.synthetic.windowMs;
  }

  /** Copies of consumed requests held for synthetic replies, and their ICMP bytes. */
  get syntheticHeld(): { records: number; bytes: number } {
    return this.synthetic.held(this.scheduler.nowMs());
  }

  get observers(): readonly ObserverSlot[] {
    return this.observing.list;
  }

  /** Requests waiting for an outcome. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** Deadline entries held (equal to pendingCount), and whether a timer is armed. */
  get deadlineState(): { entries: number; armed: boolean } {
    return { entries: this.deadlines.size, armed: this.deadlines.armed };
  }

  get flowVerdicts(): number {
    return this.flows.size;
  }

  get sessions(): readonly SessionSlot[] {
    return this.slots;
  }

  get draining(): boolean {
    return this.serverDraining;
  }

  /**
   * Live reconfiguration (SIGHUP / EchoAdmin.Reload): requests received from now on get this
   * deadline, and default actions are taken with this policy; pending requests keep the
   * deadline they were given. New sessions' Welcome shows the new values. Nothing here can
   * fail, hence always null (the shape every reloadable part shares).
   */
  apply(settings: DecisionSettings): null {
    this.settings = frozenSettings(decisionOf(settings));
    return null;
  }

  /** Flows pinned to each open decide session, and the live flow verdicts each gave. */
  flowCounts(): Map<SessionSlot, { affinity: number; verdicts: number }> {
    const affinity = this.affinity.countByOwner();
    const verdicts = this.flows.countByOwner(this.scheduler.nowMs());
    const out = new Map<SessionSlot, { affinity: number; verdicts: number }>();
    for (const s of this.slots)
      out.set(s, { affinity: affinity.get(s) ?? 0, verdicts: verdicts.get(s) ?? 0 });
    return out;
  }

  /** The Forwarder handler: true = consumed, false = fallthrough. */
  readonly handle = (req: ForwarderRequest): boolean | Decision => {
    const f = echoRequestFields(req);
    if (f === null) {
      // Echo Replies, errors…: nothing to decide; the netstack's own path goes on.
      this.counters.nonEcho++;
      return false;
    }
    this.counters.requests++;
    const now = this.scheduler.nowMs();
    const temporary = req.packetInfo().localAddressTemporary;
    const trace = this.telemetry === null ? null : this.telemetry.requestStarted(f, temporary);
    const answer = this.dispatch(req, f, temporary, now, trace);
    if (this.observing.list.length > 0) {
      // The copy carries the decide event's request id, or 0 when the outcome came at once.
      if (answer instanceof PendingRequest)
        this.observing.copy(req, f, temporary, now, answer.id, answer.deadlineMs, trace);
      else this.observing.copy(req, f, temporary, now, 0, now, trace);
    }
    return answer;
  };

  /** Gives the request its outcome now, or makes it pending with a decide session. */
  private dispatch(
    req: ForwarderRequest,
    f: EchoRequestFields,
    temporary: boolean,
    now: number,
    trace: StartedTrace,
  ): boolean | PendingRequest {
    const flow = flowKey(f.source, f.destination, f.ident);
    const flowAction = this.flows.lookup(flow, now);
    if (flowAction !== null) return this.endNow(req, f, temporary, trace, flowAction, "flow");
    if (this.serverDraining || this.slots.length === 0)
      return this.endNow(req, f, temporary, trace, this.settings.policy.onNoClient, "noClient");
    // Only sessions hold pending requests, so a full pending map means sessions exist.
    if (this.pending.size >= this.maxPending)
      return this.endNow(req, f, temporary, trace, this.settings.policy.onOverload, "overload");
    const choice = this.choose(f, temporary, flow);
    if (choice === NO_CLIENT)
      return this.endNow(req, f, temporary, trace, this.settings.policy.onNoClient, "noClient");
    if (choice === BUSY)
      return this.endNow(req, f, temporary, trace, this.settings.policy.onOverload, "overload");
    const p = new PendingRequest(
      this.nextId++,
      req,
      f,
      temporary,
      flow,
      now,
      now + this.settings.deadlineMs,
      choice,
    );
    p.trace = trace;
    this.pending.add(p);
    this.deadlines.add(p);
    this.assign(p, choice, now);
    return p;
  }

  /** A new observe session. */
  openObserver(filter: SessionFilter, sink: ObserverSink): ObserverSlot {
    return this.observing.open(filter, sink);
  }

  closeObserver(slot: ObserverSlot): void {
    this.observing.close(slot);
  }

  /** A new decide session. */
  openSession(
    filter: SessionFilter,
    maxInFlight: number,
    sink: SessionSink,
    meta?: DecidingSession,
  ): SessionSlot {
    const slot = new SessionSlot(this.nextSessionIndex++, filter, maxInFlight, sink, meta);
    this.slots.push(slot);
    this.counters.sessionsOpened++;
    if (this.serverDraining) this.drainSession(slot);
    return slot;
  }

  /** Applies a batch of verdicts from `slot`, in order; refusals go back to its sink. */
  decide(slot: SessionSlot, verdicts: Verdicts): void {
    // One clock read per batch: it is applied in one go.
    const now = this.scheduler.nowMs();
    for (let i = 0; i < verdicts.length; i++) {
      const id = verdicts.ids[i];
      const action = outcomeActionOf(verdicts.actions[i]);
      if (action === null) {
        this.reject(
          slot.sink,
          verdicts.requestId(i),
          "invalidAction",
          `request ${verdicts.requestId(i)}: action ${verdicts.actions[i]} is not CONSUME, REPLY or FALLTHROUGH`,
        );
        continue;
      }
      const p = this.pending.get(id);
      if (p === undefined) {
        this.rejectEnded(slot, verdicts.requestId(i), id);
        continue;
      }
      if (p.session !== slot) {
        this.rejectForeign(slot, verdicts.requestId(i), id);
        continue;
      }
      const flowMs = verdicts.flowMs[i];
      if (flowMs > 0) {
        const ms = Math.min(flowMs, this.maxFlowMs);
        if (this.flows.set(p.flow, action, now + ms, slot)) this.counters.flowEvictions++;
      }
      // Before finish(): the request is still live, so its bytes can be copied.
      if (action === "consume")
        this.synthetic.consumed(p.id, slot.index, p.request, p.fields, now, p.trace);
      slot.decided++;
      this.finish(p, action, "verdict", now - p.receivedAtMs);
    }
  }

  /** A SyntheticReply from `slot`: sent, or refused with the reason (synthetic-replies.ts). */
  syntheticReply(slot: SessionSlot, requestId: bigint, answer: SyntheticAnswer): void {
    const r = this.synthetic.reply(slot, requestId, answer, this.scheduler.nowMs());
    if (r !== null) this.reject(slot.sink, requestId, r.kind, r.message);
  }

  /** Counts a refusal and sends it to the client. */
  reject(sink: SessionSink, requestId: bigint, kind: RejectionKind, message: string): void {
    this.counters.rejections[kind]++;
    sink.reject(requestId, kind, message);
  }

  /** The session takes no new requests; its in-flight ones are still decided. */
  drainSession(slot: SessionSlot): void {
    if (slot.draining || slot.closed) return;
    slot.draining = true;
    if (slot.inFlight === 0) slot.sink.idle();
  }

  /**
   * The session ended: its flow verdicts and affinity go; each in-flight request moves to
   * another matching session if its budget allows, otherwise gets on-disconnect.
   */
  closeSession(slot: SessionSlot): void {
    if (slot.closed) return;
    slot.closed = true;
    this.slots.splice(this.slots.indexOf(slot), 1);
    this.counters.sessionsClosed++;
    this.flows.clearOwner(slot);
    this.affinity.clearOwner(slot);
    const now = this.scheduler.nowMs();
    for (const p of slot.inFlightRequests()) {
      const next =
        p.deadlineMs - now >= this.minRedispatchBudgetMs
          ? this.choose(p.fields, p.temporary, p.flow)
          : NO_CLIENT;
      if (next === NO_CLIENT || next === BUSY) {
        this.finish(p, this.settings.policy.onDisconnect, "disconnect");
      } else {
        this.detach(p);
        this.counters.redispatched++;
        this.assign(p, next, now);
      }
    }
    this.telemetry?.sessionEnded(slot.meta);
  }

  /** Server drain: no new requests go out; every session drains. */
  beginDrain(): void {
    this.serverDraining = true;
    for (const s of [...this.slots]) this.drainSession(s);
  }

  /** Resolves once no request is pending. */
  whenIdle(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private choose(f: EchoRequestFields, temporary: boolean, flow: string): Choice {
    const pinned = this.affinity.get(flow);
    if (pinned?.canTake() && pinned.filter.matches(f, temporary)) return pinned;
    const n = this.slots.length;
    if (n === 0) return NO_CLIENT;
    // Start the scan one further each time, so ties in in-flight take turns.
    const start = this.rotor++ % n;
    let best: SessionSlot | null = null;
    let matched = false;
    for (let k = 0; k < n; k++) {
      const s = this.slots[(start + k) % n];
      if (s.draining || !s.filter.matches(f, temporary)) continue;
      matched = true;
      if (!s.canTake()) continue;
      if (best === null || s.inFlight < best.inFlight) best = s;
    }
    if (best === null) return matched ? BUSY : NO_CLIENT;
    // A flow stays pinned to its session while it lives, even when it could not take this one.
    if (pinned === null) this.affinity.set(flow, best);
    return best;
  }

  private assign(p: PendingRequest, slot: SessionSlot, now: number): void {
    p.session = slot;
    slot.inFlight++;
    p.previousInSession = slot.last;
    p.nextInSession = null;
    if (slot.last === null) slot.first = p;
    else slot.last.nextInSession = p;
    slot.last = p;
    // Before send(): the event carries the decide span's traceparent (sampled requests only).
    if (p.trace?.sampled === true) this.telemetry?.decisionStarted(p.trace, slot.meta);
    slot.sink.send(p, now);
  }

  private detach(p: PendingRequest): void {
    const s = p.session;
    s.inFlight--;
    const before = p.previousInSession;
    const after = p.nextInSession;
    if (before === null) s.first = after;
    else before.nextInSession = after;
    if (after === null) s.last = before;
    else after.previousInSession = before;
    // No links left behind: a finished request must not keep its neighbours reachable.
    p.previousInSession = null;
    p.nextInSession = null;
  }

  /**
   * The one place a pending request ends. `decisionMs`: receive to verdict, measured with the
   * verdict batch's clock read (-1 without a verdict).
   */
  private finish(
    p: PendingRequest,
    action: OutcomeAction,
    cause: OutcomeCause,
    decisionMs = -1,
  ): void {
    this.pending.delete(p);
    this.deadlines.remove(p);
    this.detach(p);
    const s = p.session;
    this.ended.record(p.id, s.index, action, cause);
    const consumed = this.carryOut(p.request, p.fields.family, p.temporary, action, cause);
    if (this.telemetry !== null)
      this.telemetry.requestEnded(p.trace, action, cause, s.meta, decisionMs);
    p.settle(consumed);
    if (s.draining && !s.closed && s.inFlight === 0) s.sink.idle();
    if (this.pending.size === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** An outcome given at once, without a session: carried out, then told to telemetry. */
  private endNow(
    req: ForwarderRequest,
    f: EchoRequestFields,
    temporary: boolean,
    trace: StartedTrace,
    action: OutcomeAction,
    cause: OutcomeCause,
  ): boolean {
    const consumed = this.carryOut(req, f.family, temporary, action, cause);
    if (this.telemetry !== null) this.telemetry.requestEnded(trace, action, cause, null, -1);
    return consumed;
  }

  /** Counts the outcome and does it; the result is the handler's answer (true = consumed). */
  private carryOut(
    req: ForwarderRequest,
    family: "ipv4" | "ipv6",
    temporary: boolean,
    action: OutcomeAction,
    cause: OutcomeCause,
  ): boolean {
    this.counters.outcomes[action][cause]++;
    this.counters.byFamily[family][action][cause]++;
    switch (action) {
      case "reply":
        req.reply();
        return true;
      case "consume":
        return true;
      case "fallthrough":
        if (temporary && this.temporaryReply) req.reply();
        return false;
    }
  }

  /** Refuses a message about a request that was sent to another session. */
  private rejectForeign(slot: SessionSlot, requestId: bigint, id: number): void {
    const r = foreignRequest(id);
    this.reject(slot.sink, requestId, r.kind, r.message);
  }

  /** How request `id` ended, when it is remembered. */
  private findEnded(id: number): EndedRequest | null {
    // NaN (an id beyond 2^53) fails both comparisons: unknown.
    return id > 0 && id < this.nextId ? this.ended.find(id) : null;
  }

  private rejectEnded(slot: SessionSlot, requestId: bigint, id: number): void {
    const e = this.findEnded(id);
    if (e === null) {
      this.reject(slot.sink, requestId, "unknownRequest", `no request ${requestId} is pending`);
    } else if (e.session !== slot.index) {
      this.rejectForeign(slot, requestId, id);
    } else if (e.timedOut) {
      this.reject(
        slot.sink,
        requestId,
        "expired",
        `request ${id}: the deadline passed first; on-timeout (${this.settings.policy.onTimeout}) applied`,
      );
    } else {
      this.reject(slot.sink, requestId, "alreadyDecided", `request ${id} already has its outcome`);
    }
  }
}
