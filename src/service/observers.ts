/**
 * Observe sessions: each gets a copy of every request its filter matches, queued (or dropped
 * when its queue is full) without waiting, so an observer never delays a decision.
 */
import type { EchoRequestFields } from "../netstack/icmp/echo-fields.js";
import type { ForwarderRequest } from "../netstack/icmp/forwarder.js";
import type { SessionFilter } from "./filter.js";
import type { Outcomes } from "./outcomes.js";
import type { StartedTrace } from "./request-telemetry.js";
import type { EventSource } from "./wire.js";

/** What the dispatcher needs from an observe session. */
export interface ObserverSink {
  /** Queue a copy of this request's event; false when the session's queue is full (dropped). */
  copy(event: EventSource): boolean;
}

/** The dispatcher's view of one observe session: it gets copies, never a decision to make. */
export class ObserverSlot {
  /** Copies queued for the session. */
  copies = 0;
  /** Copies lost to a full queue. */
  dropped = 0;

  constructor(
    readonly filter: SessionFilter,
    readonly sink: ObserverSink,
  ) {}
}

export class Observers {
  private readonly slots: ObserverSlot[] = [];

  constructor(private readonly counters: Outcomes) {}

  get list(): readonly ObserverSlot[] {
    return this.slots;
  }

  open(filter: SessionFilter, sink: ObserverSink): ObserverSlot {
    const slot = new ObserverSlot(filter, sink);
    this.slots.push(slot);
    this.counters.sessionsOpened++;
    return slot;
  }

  close(slot: ObserverSlot): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    this.slots.splice(i, 1);
    this.counters.sessionsClosed++;
  }

  /**
   * Copies of the request's event to every matching observer. The copy carries the decide
   * event's request id and deadline, or 0 and `now` when the request got its outcome at once.
   */
  copy(
    req: ForwarderRequest,
    f: EchoRequestFields,
    temporary: boolean,
    now: number,
    id: number,
    deadlineMs: number,
    trace: StartedTrace,
  ): void {
    const event: EventSource = {
      id,
      request: req,
      fields: f,
      temporary,
      receivedAtMs: now,
      deadlineMs,
      trace,
    };
    for (const o of this.slots) {
      if (!o.filter.matches(f, temporary)) continue;
      if (o.sink.copy(event)) {
        o.copies++;
        this.counters.observerCopies++;
      } else {
        o.dropped++;
        this.counters.observerDrops++;
      }
    }
  }
}
