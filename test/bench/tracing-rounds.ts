/**
 * What tracing costs the decision path, measured so that a noisy shared machine does not decide
 * it: rounds of three rows — tracing off, 1 % sampled, 100 % sampled, 1 stream × batch 16 —
 * each row a fresh process with tracing set up as the daemon does (tracing-row.ts), one round
 * after another, each round starting one mode later (off, 1 %, 100 %; 1 %, 100 %, off; …).
 * Each round gives its own ratios against its own "off" row, measured seconds apart; the result
 * is the median of those ratios, printed with their spread. BENCH_TRACING_ROUNDS (default 6: each
 * mode twice in each place) rounds; each row is bounded by the service
 * bench's count and seconds (BENCH_SERVICE_COUNT, BENCH_SERVICE_SECONDS), each process by a
 * minute more.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Bounds, Measured, ServiceBenchRow } from "./service.js";

const ROW = fileURLToPath(new URL("./tracing-row.ts", import.meta.url));

export const TRACING_MODES = [
  { label: "off", arg: "off" },
  { label: "1% sampled", arg: "0.01" },
  { label: "100% sampled", arg: "1" },
] as const;

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface TracingRounds {
  /** decisions/s per round: off, 1 %, 100 %. */
  rounds: { off: number; one: number; all: number }[];
  /** Per-round 1 % ÷ off and 100 % ÷ off. */
  oneVsOff: Spread;
  allVsOff: Spread;
  /**
   * The same from the server thread's CPU time per decision (off's ÷ the mode's): steadier
   * than decisions/s where other processes take the cores; null without /proc.
   */
  oneVsOffCpu: Spread | null;
  allVsOffCpu: Spread | null;
  /** One row per mode: the round whose rate is that mode's median (its latency and CPU). */
  rows: ServiceBenchRow[];
}

/** The last run's rounds, for run.ts's targets and JSON. */
export const tracingResults: TracingRounds[] = [];

export function spreadOf(xs: readonly number[]): Spread {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1] };
}

/** One row in a child process; its JSON line. */
function row(arg: string, b: Bounds): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [...process.execArgv, ROW, arg, String(b.count), String(b.seconds)],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), (b.seconds * 3 + 60) * 1000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      const line = out.trim().split("\n").pop() ?? "";
      if (code !== 0 || !line.startsWith("{"))
        reject(new Error(`tracing row ${arg} exited ${code}: ${out.slice(-300)}`));
      else resolve(JSON.parse(line) as Measured);
    });
  });
}

export async function runTracingRounds(b: Bounds): Promise<TracingRounds> {
  const n = Number(process.env.BENCH_TRACING_ROUNDS ?? 6);
  if (!Number.isInteger(n) || n < 1) throw new Error("BENCH_TRACING_ROUNDS: a positive integer");
  const measured: Measured[][] = [];
  for (let i = 0; i < n; i++) {
    // Each round starts one mode later: every mode runs first, second and third equally often.
    // With the same mode in all three places, the row run first was the fastest in 3 of 5
    // rounds (0.78–1.07 for the second place ÷ the first, median 0.85).
    const round: Measured[] = [];
    for (let j = 0; j < TRACING_MODES.length; j++) {
      const k = (i + j) % TRACING_MODES.length;
      round[k] = await row(TRACING_MODES[k].arg, b);
    }
    measured.push(round);
  }
  const rounds = measured.map(([off, one, all]) => ({
    off: off.decisionsPerSecond,
    one: one.decisionsPerSecond,
    all: all.decisionsPerSecond,
  }));
  const rows = TRACING_MODES.map((m, k): ServiceBenchRow => {
    const byRate = measured
      .map((r) => r[k])
      .sort((x, y) => x.decisionsPerSecond - y.decisionsPerSecond);
    return {
      ...byRate[(byRate.length - 1) >> 1],
      name: `service 1 stream, batch 16, tracing ${m.label}`,
      ratioVsBare: null,
    };
  });
  const cpu = (k: number): Spread | null => {
    const xs = measured.map(
      (r) => (r[0].serverCpuUs ?? Number.NaN) / (r[k].serverCpuUs ?? Number.NaN),
    );
    return xs.some(Number.isNaN) ? null : spreadOf(xs);
  };
  return {
    rounds,
    oneVsOff: spreadOf(rounds.map((r) => r.one / r.off)),
    allVsOff: spreadOf(rounds.map((r) => r.all / r.off)),
    oneVsOffCpu: cpu(1),
    allVsOffCpu: cpu(2),
    rows,
  };
}

const k = (x: number): string => `${(x / 1000).toFixed(1)}k`;

export function printTracingRounds(t: TracingRounds): void {
  console.log("tracing rounds (decisions/s, 1 stream × 16; off / 1 % / 100 %, ratios to off):");
  for (const [i, r] of t.rounds.entries())
    console.log(
      `  round ${i + 1}: ${k(r.off)} / ${k(r.one)} / ${k(r.all)}  →  ${(r.one / r.off).toFixed(2)} / ${(r.all / r.off).toFixed(2)}`,
    );
  const f = (s: Spread): string =>
    `median ${s.median.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})`;
  console.log(`  decisions/s, 1 % ÷ off: ${f(t.oneVsOff)}; 100 % ÷ off: ${f(t.allVsOff)}`);
  if (t.oneVsOffCpu !== null && t.allVsOffCpu !== null)
    console.log(
      `  server CPU per decision, off ÷ 1 %: ${f(t.oneVsOffCpu)}; off ÷ 100 %: ${f(t.allVsOffCpu)}`,
    );
}
