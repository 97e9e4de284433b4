/**
 * After sessions close, hand the memory they used back to the kernel. Two things keep it: V8
 * holds the old-space pages the sessions' objects grew (Node never tells V8 it is idle, so they
 * stay committed until some later full collection), and glibc keeps what the HTTP/2
 * connections freed in its arenas (measured after 5,000 sessions: 100 MB held, 34 MB in use).
 * Once the open-session count has fallen, the allocator is trimmed on the next few ticks; when
 * no session is open at all, a full collection runs first — nothing then waits on a deadline,
 * so its pause (tens of ms) costs no decision. Measured: RSS back to its baseline (−4 to −1 MB)
 * within 2 s of the last of 5,000 sessions closing, against +1 to +57 MB with the trim alone.
 * The same is done once at the end of start-up, before the service says it is serving (see
 * serve.ts): loading the modules grew the young generation to 16 MB and left old-space garbage
 * (RSS at rest 89–91 MB before, see collectGarbage); that collection pauses the process for
 * ~300 ms, which a ping arriving just after "serving" would otherwise wait out.
 */
import { getHeapSpaceStatistics, queryObjects, setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

export interface MemoryRelease {
  /** A full garbage collection. */
  collect(): void;
  /** Returns the C allocator's free memory to the kernel; whether any was. */
  trim(): boolean;
  /** V8's young generation now, in bytes (default: youngGeneration). */
  young?: () => YoungGeneration;
}

export interface YoungGeneration {
  /** Bytes its objects use. */
  used: number;
  /** Bytes it has committed. */
  committed: number;
}

export function youngGeneration(): YoungGeneration {
  const s = getHeapSpaceStatistics().find((x) => x.space_name === "new_space");
  return { used: s?.space_used_size ?? 0, committed: s?.physical_space_size ?? 0 };
}

/** Less allocation than this over one tick is quiet: next to no requests. */
const QUIET_BYTES = 1 << 20;
/** A young generation committed beyond this has grown under load (a collection leaves 1 MB). */
const GROWN_YOUNG_BYTES = 4 << 20;

let gc: (() => void) | null = null;

/** A class nothing instantiates: the heap query below counts nothing, it is there for its GC. */
class NeverInstantiated {}

/**
 * A full V8 collection that also shrinks the young generation. An ordinary full collection
 * (`gc()`) never shrinks it: once start-up or a flood has grown it (to 16 MB at start-up, up to
 * 2 × --max-semi-space-size under load) it stays committed. V8's "all available garbage"
 * collection does shrink it (to 1 MB; it grows again with the allocation rate), and a heap
 * query runs one first: v8.queryObjects is the cheapest (tens of ms on a 30 MB heap). Without
 * it (Node older than 20.13) a plain full collection runs instead.
 */
export function collectGarbage(): void {
  if (typeof queryObjects === "function") {
    withoutExperimentalWarning(() => queryObjects(NeverInstantiated, { format: "count" }));
    return;
  }
  fullCollection();
}

/** Node warns once that queryObjects is experimental; that line is not for the daemon's log. */
function withoutExperimentalWarning(fn: () => void): void {
  const emit = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]): void => {
    const type = typeof rest[0] === "string" ? rest[0] : (rest[0] as { type?: string })?.type;
    if (type === "ExperimentalWarning") return;
    (emit as (w: string | Error, ...r: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    fn();
  } finally {
    process.emitWarning = emit;
  }
}

/**
 * A full V8 collection without `--expose-gc` on the command line: the flag is set at run time
 * and `gc` taken from a fresh context, where V8 installs it (Node's own tests do the same).
 */
function fullCollection(): void {
  if (gc === null) {
    setFlagsFromString("--expose-gc");
    gc = runInNewContext("gc") as () => void;
  }
  gc();
}

export function trimWhenSessionsClose(
  openSessions: () => number,
  release: MemoryRelease,
  everyMs = 2000,
  ticksAfterClose = 5,
): () => void {
  let last = openSessions();
  let pending = 0;
  const young = release.young ?? youngGeneration;
  let lastYoungUsed = young().used;
  const timer = setInterval(() => {
    const now = openSessions();
    if (now < last) pending = ticksAfterClose;
    last = now;
    // Quiet: the young generation's use grew by less than QUIET_BYTES since the last tick and
    // never fell (no scavenge in between). Quiet after a busy spell (idle connections or
    // sessions piling up, a flood ending) that grew the young generation, one collection gives
    // it back with the old-space garbage, sessions open or not: a request arriving during the
    // pause (tens of ms) waits that long, once per busy spell.
    const y = young();
    const quiet = y.used >= lastYoungUsed && y.used - lastYoungUsed < QUIET_BYTES;
    lastYoungUsed = y.used;
    if (quiet && y.committed > GROWN_YOUNG_BYTES) {
      release.collect();
      release.trim();
      lastYoungUsed = young().used;
    } else if (pending > 0) {
      pending--;
      if (now === 0) release.collect();
      release.trim();
    }
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
