/**
 * The traces of sampled requests whose copies the synthetic-reply store holds, so a later
 * synthetic answer is recorded in the request's trace. Sampled requests are few (1 % by
 * default), so this is a Map by request id in consume order (= expiry order, one window for
 * all), bounded like the store; unsampled requests keep nothing here.
 */
import type { RequestTrace } from "./request-telemetry.js";

export interface HeldTrace {
  readonly trace: RequestTrace;
  readonly consumedAtMs: number;
}

export class SyntheticTraces {
  private readonly held = new Map<number, HeldTrace>();

  constructor(
    private readonly windowMs: number,
    private readonly maxHeld: number,
  ) {}

  get size(): number {
    return this.held.size;
  }

  add(id: number, trace: RequestTrace, nowMs: number): void {
    this.expire(nowMs);
    if (this.held.size >= this.maxHeld) {
      const oldest = this.held.keys().next();
      if (!oldest.done) this.held.delete(oldest.value);
    }
    this.held.set(id, { trace, consumedAtMs: nowMs });
  }

  /** The trace of request `id`, kept for another answer (a refused one may be corrected). */
  peek(id: number, nowMs: number): HeldTrace | null {
    this.expire(nowMs);
    return this.held.get(id) ?? null;
  }

  /** The trace of request `id`, forgotten (its one synthetic answer was spent). */
  take(id: number, nowMs: number): HeldTrace | null {
    const h = this.peek(id, nowMs);
    if (h !== null) this.held.delete(id);
    return h;
  }

  private expire(nowMs: number): void {
    for (const [id, h] of this.held) {
      if (h.consumedAtMs + this.windowMs > nowMs) return;
      this.held.delete(id);
    }
  }
}
