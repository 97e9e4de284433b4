import type { Clock } from "./clock.js";

/**
 * A token bucket (gVisor's ICMPRateLimiter, golang.org/x/time/rate semantics): `rate` tokens per
 * second, at most `burst` saved up; starts full.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly clock: Clock,
    private rate: number,
    private burst: number,
  ) {
    this.tokens = burst;
    this.last = clock.nowMs();
  }

  /** Takes one token if there is one. */
  allow(): boolean {
    const now = this.clock.nowMs();
    const elapsed = now - this.last;
    this.last = now;
    if (elapsed > 0) this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.rate) / 1000);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }

  setLimit(rate: number, burst: number): void {
    this.rate = rate;
    this.burst = burst;
    this.tokens = Math.min(this.tokens, burst);
  }
}

/** The ICMP message types whose sending is rate limited, as a 256-entry mask. */
export class ICMPTypeMask {
  private readonly bits = new Uint8Array(256);
  constructor(types: Iterable<number>) {
    for (const t of types) this.bits[t & 0xff] = 1;
  }
  has(type: number): boolean {
    return this.bits[type & 0xff] === 1;
  }
  types(): number[] {
    const out: number[] = [];
    for (let t = 0; t < 256; t++) if (this.bits[t] === 1) out.push(t);
    return out;
  }
}

/** gVisor's defaults: IPv4 Dest Unreachable, Source Quench, Time Exceeded, Parameter Problem. */
export const DEFAULT_ICMPV4_RATE_LIMITED_TYPES: readonly number[] = [3, 4, 11, 12];

/** gVisor's defaults: every ICMPv6 error and informational type below 128 except Packet Too Big. */
export const DEFAULT_ICMPV6_RATE_LIMITED_TYPES: readonly number[] = Array.from(
  { length: 128 },
  (_, t) => t,
).filter((t) => t !== 2);

export const DEFAULT_ICMP_RATE_LIMIT = 1000;
export const DEFAULT_ICMP_BURST = 50;
