/**
 * Shared benchmark helpers: private network namespaces (the vitest netns harness cannot be
 * imported outside vitest), bounded ping floods and their summaries.
 *
 * Network safety: every namespace is created here with a unique name and deleted on exit, on
 * SIGINT/SIGTERM and on failure; floods target 198.18.0.0/15 only, inside those namespaces, and
 * are bounded in count (-c) and time (timeout -s INT, so ping still prints its summary).
 */
import { execFile, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function exec(
  cmd: string,
  args: readonly string[],
  timeoutMs = 120_000,
): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { timeout: timeoutMs, maxBuffer: 16 << 20, killSignal: "SIGKILL" },
      (err, stdout, stderr) => {
        const code =
          err === null ? 0 : typeof err.code === "number" ? err.code : (child.exitCode ?? null);
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

async function run(cmd: string, args: readonly string[]): Promise<string> {
  const r = await exec(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

const live = new Set<string>();
let hooksInstalled = false;

function deleteAllSync(): void {
  for (const name of live) {
    const pids = spawnSync("ip", ["netns", "pids", name], { encoding: "utf8" }).stdout ?? "";
    for (const pid of pids.split(/\s+/).filter((p) => /^\d+$/.test(p))) {
      spawnSync("kill", ["-9", pid], { stdio: "ignore" });
    }
    spawnSync("ip", ["netns", "delete", name], { stdio: "ignore" });
  }
  live.clear();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on("exit", deleteAllSync);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      deleteAllSync();
      process.exit(130);
    });
  }
}

/** A private network namespace for a benchmark; `destroy()` kills what runs inside. */
export class BenchNetns {
  private constructor(readonly name: string) {}

  static async create(purpose: string): Promise<BenchNetns> {
    installHooks();
    const name = `icmpfwd-bench-${purpose}-${process.pid}-${randomBytes(3).toString("hex")}`;
    await run("ip", ["netns", "add", name]);
    live.add(name);
    const ns = new BenchNetns(name);
    await ns.sh("ip link set lo up");
    return ns;
  }

  get path(): string {
    return `/var/run/netns/${this.name}`;
  }

  exec(cmd: string, args: readonly string[], timeoutMs?: number): Promise<ExecResult> {
    return exec("ip", ["netns", "exec", this.name, cmd, ...args], timeoutMs);
  }

  sh(cmdline: string): Promise<string> {
    return run("ip", ["netns", "exec", this.name, "sh", "-c", cmdline]);
  }

  async destroy(): Promise<void> {
    if (!live.has(this.name)) return;
    const pids = (await exec("ip", ["netns", "pids", this.name])).stdout;
    const list = pids.split(/\s+/).filter((p) => /^\d+$/.test(p));
    if (list.length > 0) await exec("kill", ["-9", ...list]);
    await exec("ip", ["netns", "delete", this.name]);
    live.delete(this.name);
  }
}

export interface PingSummary {
  transmitted: number;
  received: number;
  rttAvgMs: number | null;
}

/** Parses iputils ping's summary (`-q` output). */
export function parsePingSummary(output: string): PingSummary {
  const counts = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(output);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(output);
  return {
    transmitted: counts ? Number(counts[1]) : 0,
    received: counts ? Number(counts[2]) : 0,
    rttAvgMs: rtt ? Number(rtt[1]) : null,
  };
}

export interface FloodOptions {
  /** Concurrent ping processes. */
  flooders: number;
  /** Echo Requests per flooder (-c). */
  count: number;
  /** Hard bound per flooder; SIGINT so ping prints its summary. */
  seconds: number;
  /** Requests in flight per flooder (-l). */
  preload: number;
}

export interface FloodResult {
  transmitted: number;
  received: number;
  /** Mean of the flooders' rtt averages, weighted by replies. */
  rttAvgMs: number | null;
  wallSeconds: number;
  repliesPerSecond: number;
}

/** CPU seconds (user + system) of this process's main thread so far, from /proc; null elsewhere. */
export function mainThreadCpuSeconds(): number | null {
  return procCpuSeconds(`${process.pid}/task/${process.pid}`);
}

/** CPU seconds (user + system, all threads) of process `pid` so far; null when it is gone. */
export function procCpuSeconds(pid: number | string): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    // utime and stime, in clock ticks (100 per second), are fields 14 and 15 after the name.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return null;
  }
}

/** Runs `body`, returning its value and the main thread's CPU seconds it took (null if unknown). */
export async function withThreadCpu<T>(
  body: () => Promise<T>,
): Promise<{ value: T; cpuSeconds: number | null }> {
  const c0 = mainThreadCpuSeconds();
  const value = await body();
  const c1 = mainThreadCpuSeconds();
  return { value, cpuSeconds: c0 === null || c1 === null ? null : c1 - c0 };
}

export function floodOptionsFromEnv(): FloodOptions {
  const num = (key: string, fallback: number): number => {
    const v = process.env[key];
    if (v === undefined || v === "") return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${key} must be a positive integer`);
    return n;
  };
  return {
    flooders: num("BENCH_FLOODERS", 4),
    count: num("BENCH_COUNT", 200_000),
    seconds: num("BENCH_SECONDS", 30),
    preload: num("BENCH_PRELOAD", 16),
  };
}

/** Runs `flooders` bounded `ping -f` at `target` from inside `ns`, all at once. */
export async function flood(ns: BenchNetns, target: string, o: FloodOptions): Promise<FloodResult> {
  if (!/^198\.1[89]\./.test(target)) throw new Error(`refusing to flood ${target}`);
  const args = [
    "-s",
    "INT",
    String(o.seconds),
    "ping",
    "-n",
    "-q",
    "-f",
    "-l",
    String(o.preload),
    "-c",
    String(o.count),
    target,
  ];
  const start = process.hrtime.bigint();
  const results = await Promise.all(
    Array.from({ length: o.flooders }, () => ns.exec("timeout", args, (o.seconds + 15) * 1000)),
  );
  const wallSeconds = Number(process.hrtime.bigint() - start) / 1e9;
  let transmitted = 0;
  let received = 0;
  let rttWeighted = 0;
  for (const r of results) {
    const s = parsePingSummary(r.stdout);
    if (s.transmitted === 0) throw new Error(`ping printed no summary: ${r.stdout}${r.stderr}`);
    transmitted += s.transmitted;
    received += s.received;
    if (s.rttAvgMs !== null) rttWeighted += s.rttAvgMs * s.received;
  }
  return {
    transmitted,
    received,
    rttAvgMs: received > 0 ? rttWeighted / received : null,
    wallSeconds,
    repliesPerSecond: received / wallSeconds,
  };
}

/** What a benchmark module measured for one mechanism. */
export interface BenchMeasurement extends FloodResult {
  mechanism: string;
  /** Anything worth a glance: where it ran, packets per batch, … */
  notes: string;
  /**
   * CPU seconds the mechanism's own process (or, in-process, this Node thread) spent during the
   * flood; null where it cannot be attributed (the kernel's). Reported per 100k replies.
   */
  cpuSeconds?: number | null;
  /** What cpuSeconds covers ("main thread", "verdict process", …). */
  cpuWhat?: string;
}

/** One row of the printed table: a measurement and its ratio to this run's kernel baseline. */
export interface BenchRow extends BenchMeasurement {
  /** The module that measured it. */
  module: string;
  /** null for the baseline itself, or when no baseline was measured. */
  ratioVsKernel: number | null;
}

/** A benchmark that `run.ts` runs under the shared flood options; append new ones to its list. */
export interface BenchModule {
  readonly name: string;
  /** True for the kernel baseline every other row is compared with. */
  readonly baseline?: boolean;
  run(o: FloodOptions): Promise<BenchMeasurement[]>;
}

/** The kernel answering the same flood across a veth pair between two private namespaces. */
export async function kernelBaseline(o: FloodOptions): Promise<FloodResult> {
  const a = await BenchNetns.create("ka");
  let b: BenchNetns | null = null;
  try {
    b = await BenchNetns.create("kb");
    await a.sh(`ip link add veth0 type veth peer name veth1 netns ${b.name}`);
    await a.sh("ip addr add 198.19.0.1/24 dev veth0 && ip link set veth0 up");
    await b.sh("ip addr add 198.19.0.2/24 dev veth1 && ip link set veth1 up");
    // Wait for the veth carrier so the first requests are not lost to a link coming up.
    await a.sh(
      "for i in $(seq 50); do ping -n -c 1 -W 1 198.19.0.2 >/dev/null && exit 0; done; exit 1",
    );
    return await flood(a, "198.19.0.2", o);
  } finally {
    await b?.destroy();
    await a.destroy();
  }
}

export const kernelBaselineBench: BenchModule = {
  name: "kernel",
  baseline: true,
  async run(o: FloodOptions): Promise<BenchMeasurement[]> {
    const r = await kernelBaseline(o);
    return [{ ...r, mechanism: "kernel across a veth pair (baseline)", notes: "198.19.0.1 → .2" }];
  },
};
