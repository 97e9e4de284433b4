/**
 * The measured-RTT mode of proxy-latency: the client host runs the system `ping` (iputils) to a
 * destination and the policy sends its synthetic reply after that round trip. Never through the
 * service's own Ping RPC, which would loop back into the service.
 *
 * - One measurement per destination at a time (concurrent requests share it), results (and
 *   failures) cached for `cacheMs`, at most `maxConcurrent` pings running at once and at most
 *   `maxQueued` waiting; past that a request gets the fallback at once.
 * - A failed ping (no reply, no route, no `ping`) yields `null`: the policy falls back to its
 *   fixed delay.
 * - Loop guard: every measurement ping carries MEASUREMENT_MARKER in its payload (`ping -p`). If
 *   the route to a destination goes through icmpfwd itself, the measurement ping reaches the
 *   policy as a request; the policy sees the marker, calls `looped(destination)` (the result is
 *   then discarded, cached as a failure, and logged) and answers that ping with the built-in
 *   reply, so nothing recurses.
 */
import { execFile } from "node:child_process";
import { isIPv6 } from "node:net";

/** "icmpfwd rtt ping": 16 bytes, iputils' longest `-p` pattern. */
export const MEASUREMENT_MARKER = Buffer.from("icmpfwd rtt ping", "latin1");

/** True when an Echo Request's payload carries MEASUREMENT_MARKER (a looped measurement ping). */
export function isMeasurementPing(payload: Uint8Array): boolean {
  return Buffer.from(payload.buffer, payload.byteOffset, payload.length).includes(
    MEASUREMENT_MARKER,
  );
}

/** The round trip `ping -c 1` printed, in milliseconds, or null. */
export function parsePingRtt(output: string): number | null {
  const m = /time[=<]\s*([\d.]+)\s*ms/.exec(output) ?? /= ([\d.]+)\/[\d.]+\/[\d.]+/.exec(output);
  if (m === null) return null;
  const v = Number(m[1]);
  return Number.isFinite(v) ? v : null;
}

export interface PingResult {
  code: number | null;
  stdout: string;
  stderr: string;
}
export type PingRunner = (args: string[]) => Promise<PingResult>;

/** Runs the system `ping` (from PATH, or `command`). */
export function systemPing(command = "ping", timeoutMs = 5_000): PingRunner {
  return (args) =>
    new Promise((resolve) => {
      execFile(command, args, { timeout: timeoutMs, killSignal: "SIGKILL" }, (err, out, errOut) => {
        const code = err === null ? 0 : typeof err.code === "number" ? err.code : null;
        resolve({ code, stdout: String(out), stderr: String(errOut || (err?.message ?? "")) });
      });
    });
}

export interface RttMeterOptions {
  /** How long a result (or a failure) is reused per destination (default 5000 ms). */
  cacheMs?: number;
  /** Pings running at once (default 4). */
  maxConcurrent?: number;
  /** Measurements waiting for a slot; past that, `null` at once (default 256). */
  maxQueued?: number;
  /** ping -W: seconds to wait for the reply (default 1). */
  timeoutS?: number;
  run?: PingRunner;
  now?: () => number;
  onLog?: (level: "info" | "warn", msg: string, fields: Record<string, unknown>) => void;
}

export interface RttMeterStats {
  /** Pings started. */
  pings: number;
  /** Measurements answered from the cache or by joining one in flight. */
  shared: number;
  failures: number;
  loops: number;
  /** Measurements refused because the queue was full. */
  overflows: number;
}

export class RttMeter {
  readonly stats: RttMeterStats = { pings: 0, shared: 0, failures: 0, loops: 0, overflows: 0 };
  private readonly cache = new Map<string, { rttMs: number | null; at: number }>();
  private readonly inFlight = new Map<string, Promise<number | null>>();
  private readonly loopedNow = new Set<string>();
  private readonly waiting: (() => void)[] = [];
  private running = 0;
  private readonly cacheMs: number;
  private readonly maxConcurrent: number;
  private readonly maxQueued: number;
  private readonly timeoutS: number;
  private readonly run: PingRunner;
  private readonly now: () => number;

  constructor(private readonly o: RttMeterOptions = {}) {
    this.cacheMs = o.cacheMs ?? 5_000;
    this.maxConcurrent = Math.max(1, o.maxConcurrent ?? 4);
    this.maxQueued = o.maxQueued ?? 256;
    this.timeoutS = Math.max(1, Math.ceil(o.timeoutS ?? 1));
    this.run = o.run ?? systemPing();
    this.now = o.now ?? Date.now;
  }

  /** The `ping` arguments for one measurement of `destination`. */
  args(destination: string): string[] {
    return [
      isIPv6(destination) ? "-6" : "-4",
      "-c",
      "1",
      "-n",
      "-W",
      String(this.timeoutS),
      "-p",
      MEASUREMENT_MARKER.toString("hex"),
      destination,
    ];
  }

  /** The RTT to `destination` in ms (cached, shared or measured now), or null when unknown. */
  measure(destination: string): Promise<number | null> {
    const c = this.cache.get(destination);
    if (c !== undefined && this.now() - c.at < this.cacheMs) {
      this.stats.shared++;
      return Promise.resolve(c.rttMs);
    }
    const pending = this.inFlight.get(destination);
    if (pending !== undefined) {
      this.stats.shared++;
      return pending;
    }
    if (this.running >= this.maxConcurrent && this.waiting.length >= this.maxQueued) {
      this.stats.overflows++;
      return Promise.resolve(null);
    }
    const p = this.ping(destination).finally(() => this.inFlight.delete(destination));
    this.inFlight.set(destination, p);
    return p;
  }

  /** A measurement ping to `destination` came back into the service: discard its result. */
  looped(destination: string): void {
    this.loopedNow.add(destination);
  }

  private async ping(destination: string): Promise<number | null> {
    if (this.running >= this.maxConcurrent) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    this.running++;
    this.stats.pings++;
    this.loopedNow.delete(destination);
    let rtt: number | null;
    let error = "";
    try {
      const r = await this.run(this.args(destination));
      rtt = r.code === 0 ? parsePingRtt(r.stdout) : null;
      if (rtt === null) error = (r.stderr.trim() || r.stdout.trim()).split("\n").pop() ?? "";
    } catch (e) {
      rtt = null;
      error = e instanceof Error ? e.message : String(e);
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
    if (this.loopedNow.delete(destination)) {
      this.stats.loops++;
      this.o.onLog?.(
        "warn",
        "the measurement ping went through icmpfwd itself (a routing loop); using the fixed delay",
        { destination },
      );
      rtt = null;
    } else if (rtt === null) {
      this.stats.failures++;
      this.o.onLog?.("warn", "measurement ping failed; using the fixed delay", {
        destination,
        error,
      });
    } else {
      this.o.onLog?.("info", "measured rtt", { destination, rttMs: rtt });
    }
    this.cache.set(destination, { rttMs: rtt, at: this.now() });
    if (this.cache.size > 4096) this.cache.delete(this.cache.keys().next().value as string);
    return rtt;
  }
}
