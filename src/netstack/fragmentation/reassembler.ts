/**
 * IP fragment reassembly shared by IPv4 and IPv6 (gVisor's network/internal/fragmentation, after
 * RFC 791, RFC 815 and RFC 8200 §4.5): one table per protocol keyed by the caller (IPv4: source,
 * destination, ID and protocol; IPv6: source, destination and ID), a hole list per datagram, a
 * memory account with a high and a low threshold, and a timeout on the stack clock.
 *
 * No timer per datagram: expired datagrams are released lazily when a fragment arrives and by
 * {@link Reassembler.expire}, which the stack calls from one unref'd sweep timer (and which
 * `stack.sweepFragments()` calls on demand), so tests on a ManualClock are deterministic.
 */

/** Linux's net.ipv4.ipfrag_high_thresh, gVisor's HighFragThreshold: 4 MiB. */
export const DEFAULT_REASSEMBLY_HIGH_THRESHOLD = 4 << 20;
/** Linux's net.ipv4.ipfrag_low_thresh, gVisor's LowFragThreshold: 3 MiB. */
export const DEFAULT_REASSEMBLY_LOW_THRESHOLD = 3 << 20;
/** gVisor's ipv4.ReassembleTimeout (Linux's ipfrag_time): 30 s. */
export const DEFAULT_IPV4_REASSEMBLY_TIMEOUT_MS = 30_000;
/** gVisor's ipv6.ReassembleTimeout (RFC 8200 §4.5: 60 seconds). */
export const DEFAULT_IPV6_REASSEMBLY_TIMEOUT_MS = 60_000;
/**
 * What one kept fragment costs besides its bytes (bookkeeping), so a flood of tiny fragments
 * is bounded by the same memory limit as a flood of large ones (gVisor counts pkt.MemSize()).
 */
export const FRAGMENT_OVERHEAD_BYTES = 128;
/** Fragment offsets and the length of every fragment but the last count in 8-octet blocks. */
export const FRAGMENT_BLOCK_SIZE = 8;

export interface ReassemblerOptions {
  timeoutMs: number;
  highThreshold: number;
  lowThreshold: number;
}

/** The gauges and counters a reassembler keeps current (a subset of IPStats). */
export interface ReassemblyStats {
  reassemblyBytes: number;
  reassemblyPending: number;
  reassemblyTimeouts: number;
  reassemblyEvictions: number;
  reassemblyOverlaps: number;
}

/** The first fragment (offset 0) as kept: a copy of the whole packet. */
export interface FirstFragment<C> {
  /** The fragment packet as received (trimmed to its declared length), copied. */
  readonly packet: Uint8Array;
  /** Where its fragmentable data starts in `packet`. */
  readonly dataOffset: number;
  /** How many leading bytes of `packet` head the reassembled datagram. */
  readonly keep: number;
  /** Whatever the protocol needs afterwards (the NIC, how the destination matched, offsets). */
  readonly context: C;
}

/** One fragment handed to {@link Reassembler.process}. */
export interface FragmentInput<C> {
  /** Byte offset of the data in the datagram's fragmentable part. */
  readonly offset: number;
  /** The fragment's data (a view: copied when kept). */
  readonly data: Uint8Array;
  readonly more: boolean;
  /** The protocol / next header the fragment names; the first fragment's wins (RFC 8200). */
  readonly protocol: number;
  /** For the first fragment: the whole packet (a view: copied) and what to keep of it. */
  readonly first: (Omit<FirstFragment<C>, "packet"> & { readonly packet: Uint8Array }) | null;
}

export type ReassemblyResult<C> =
  | { readonly kind: "queued" }
  | {
      readonly kind: "done";
      /** `first.packet[0, keep)` followed by the reassembled data. */
      readonly datagram: Uint8Array;
      /** Length of the reassembled fragmentable data. */
      readonly payloadLength: number;
      readonly protocol: number;
      readonly first: FirstFragment<C>;
    }
  | { readonly kind: "error"; readonly reason: "invalid" | "overlap" | "conflict" };

const QUEUED = { kind: "queued" } as const;
const INVALID = { kind: "error", reason: "invalid" } as const;
const OVERLAP = { kind: "error", reason: "overlap" } as const;
const CONFLICT = { kind: "error", reason: "conflict" } as const;

/** A range of the datagram: still missing (data null) or filled with a kept fragment. */
interface Hole {
  first: number;
  last: number;
  final: boolean;
  data: Uint8Array | null;
}

class Reassembly<C> {
  readonly holes: Hole[] = [{ first: 0, last: 0xffffffff, final: true, data: null }];
  filled = 0;
  memSize = 0;
  protocol = 0;
  first: FirstFragment<C> | null = null;
  constructor(readonly createdAtMs: number) {}
}

/**
 * One protocol's reassembly table. `process` never throws: invalid input comes back as an
 * error result, and the datagram it belonged to is released (as gVisor does).
 */
export class Reassembler<C> {
  /** In creation order: the first entry is the oldest (eviction and expiry start there). */
  private readonly table = new Map<string, Reassembly<C>>();
  private memSize = 0;
  private readonly low: number;

  constructor(
    private readonly options: ReassemblerOptions,
    private readonly stats: ReassemblyStats,
    /** Called for each datagram released by the timeout, with its first fragment if it came. */
    private readonly onTimeout: (first: FirstFragment<C> | null) => void = () => {},
  ) {
    this.low = Math.max(0, Math.min(options.lowThreshold, options.highThreshold));
  }

  /** Bytes held now. */
  get memoryBytes(): number {
    return this.memSize;
  }

  /** Incomplete datagrams held now. */
  get pending(): number {
    return this.table.size;
  }

  process(key: string, f: FragmentInput<C>, nowMs: number): ReassemblyResult<C> {
    this.expire(nowMs);
    const size = f.data.length;
    const first = f.offset;
    const last = first + size - 1;
    if (
      size === 0 ||
      first % FRAGMENT_BLOCK_SIZE !== 0 ||
      (f.more && size % FRAGMENT_BLOCK_SIZE !== 0)
    ) {
      return INVALID;
    }
    let r = this.table.get(key);
    if (r === undefined) {
      r = new Reassembly<C>(nowMs);
      this.table.set(key, r);
    }
    let found = false;
    let consumed = 0;
    const holes = r.holes;
    for (let i = 0; i < holes.length; i++) {
      const hole = holes[i];
      if (last < hole.first || hole.last < first) continue;
      // RFC 8200 §4.5 (and Linux for IPv4): a fragment overlapping another abandons the datagram.
      if (first < hole.first || hole.last < last) {
        this.stats.reassemblyOverlaps++;
        this.release(key, r);
        return OVERLAP;
      }
      if (!f.more && (!hole.final || (hole.data !== null && hole.last !== last))) {
        // A second final fragment that ends elsewhere.
        this.release(key, r);
        return CONFLICT;
      }
      found = true;
      if (hole.data !== null) {
        // gVisor's reassembler.process (June 2026): a strict subset of a fragment already kept
        // is an overlap and abandons the datagram; only an exact duplicate is ignored.
        if (first !== hole.first || last !== hole.last) {
          this.stats.reassemblyOverlaps++;
          this.release(key, r);
          return OVERLAP;
        }
        continue;
      }
      if (first > hole.first) {
        holes.push({ first: hole.first, last: first - 1, final: false, data: null });
      }
      let final = hole.final;
      if (last < hole.last && f.more) {
        holes.push({ first: last + 1, last: hole.last, final: hole.final, data: null });
        final = false;
      }
      let data: Uint8Array;
      if (first === 0 && f.first !== null) {
        const packet = f.first.packet.slice();
        r.first = {
          packet,
          dataOffset: f.first.dataOffset,
          keep: f.first.keep,
          context: f.first.context,
        };
        r.protocol = f.protocol;
        data = packet.subarray(f.first.dataOffset, f.first.dataOffset + size);
        consumed = packet.length + FRAGMENT_OVERHEAD_BYTES;
      } else {
        data = f.data.slice();
        consumed = size + FRAGMENT_OVERHEAD_BYTES;
      }
      holes[i] = { first, last, final, data };
      r.filled++;
      r.memSize += consumed;
      break;
    }
    if (!found) {
      // Beyond the end the final fragment set.
      this.release(key, r);
      return CONFLICT;
    }
    this.memSize += consumed;
    let result: ReassemblyResult<C> = QUEUED;
    if (r.filled === holes.length && r.first !== null) {
      holes.sort((a, b) => a.first - b.first);
      const end = holes[holes.length - 1].last + 1;
      const head = r.first;
      const datagram = new Uint8Array(head.keep + end);
      datagram.set(head.packet.subarray(0, head.keep), 0);
      for (const h of holes) if (h.data !== null) datagram.set(h.data, head.keep + h.first);
      result = { kind: "done", datagram, payloadLength: end, protocol: r.protocol, first: head };
      this.release(key, r);
    }
    if (this.memSize > this.options.highThreshold) {
      // Evict the oldest datagrams until memory is back under the low threshold.
      for (const [k, old] of this.table) {
        if (this.memSize <= this.low) break;
        this.stats.reassemblyEvictions++;
        this.release(k, old);
      }
    }
    this.updateGauges();
    return result;
  }

  /** Releases every datagram older than the timeout; returns how many. */
  expire(nowMs: number): number {
    let n = 0;
    for (const [k, r] of this.table) {
      if (nowMs - r.createdAtMs < this.options.timeoutMs) break;
      this.release(k, r);
      this.stats.reassemblyTimeouts++;
      n++;
      this.onTimeout(r.first);
    }
    if (n > 0) this.updateGauges();
    return n;
  }

  /** Forgets everything (the stack is closing). */
  clear(): void {
    this.table.clear();
    this.memSize = 0;
    this.updateGauges();
  }

  private release(key: string, r: Reassembly<C>): void {
    if (this.table.get(key) !== r) return;
    this.table.delete(key);
    this.memSize -= r.memSize;
    if (this.memSize < 0) this.memSize = 0;
    this.updateGauges();
  }

  private updateGauges(): void {
    this.stats.reassemblyBytes = this.memSize;
    this.stats.reassemblyPending = this.table.size;
  }
}

/** Lowercase hex of `bytes[start, end)`, for table keys. */
export function hexKey(bytes: Uint8Array, start: number, end: number): string {
  let s = "";
  for (let i = start; i < end; i++) s += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
  return s;
}
