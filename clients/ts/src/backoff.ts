/** Jittered exponential backoff between reconnect attempts. */

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
