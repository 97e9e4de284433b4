/**
 * After sessions close, hand the memory they used back to the kernel. Two things keep it: V8
 * holds the old-space pages the sessions' objects grew (Node never tells V8 it is idle, so they
 * stay committed until some later full collection), and glibc keeps what the HTTP/2
 * connections freed in its arenas (measured after 5,000 sessions: 100 MB held, 34 MB in use).
 * Once the open-session count has fallen, the allocator is trimmed on the next few ticks; when
 * no session is open at all, a full collection runs first — nothing then waits on a deadline,
 * so its pause (tens of ms) costs no decision. Measured: RSS back to its baseline (−4 to −1 MB)
 * within 2 s of the last of 5,000 sessions closing, against +1 to +57 MB with the trim alone.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

export interface MemoryRelease {
  /** A full garbage collection. */
  collect(): void;
  /** Returns the C allocator's free memory to the kernel; whether any was. */
  trim(): boolean;
}

let gc: (() => void) | null = null;

/**
 * A full V8 collection without `--expose-gc` on the command line: the flag is set at run time
 * and `gc` taken from a fresh context, where V8 installs it (Node's own tests do the same).
 */
export function collectGarbage(): void {
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
  const timer = setInterval(() => {
    const now = openSessions();
    if (now < last) pending = ticksAfterClose;
    last = now;
    if (pending > 0) {
      pending--;
      if (now === 0) release.collect();
      release.trim();
    }
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
