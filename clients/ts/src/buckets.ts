/** Per-key token buckets: per-source-rate-limit's verdicts and the relay's rate limit. */

/** A token bucket per key: `take(key)` is true while the key has a token. */
export function tokenBuckets(
  rate: number,
  burst: number,
  now: () => number = Date.now,
): { take(key: string): boolean } {
  const buckets = new Map<string, { tokens: number; at: number }>();
  return {
    take(key) {
      const t = now();
      const b = buckets.get(key) ?? { tokens: burst, at: t };
      b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * rate);
      b.at = t;
      buckets.set(key, b);
      if (buckets.size > 65_536) buckets.delete(buckets.keys().next().value as string);
      if (b.tokens < 1) return false;
      b.tokens -= 1;
      return true;
    },
  };
}
