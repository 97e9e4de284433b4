/**
 * `npm run bench [-- --quick]`: runs every module in `modules` under the same bounded flood and
 * prints one table (replies/s, rtt, ratios, CPU per 100k), the memory table and the targets
 * table; writes `bench-results.json` (BENCH_JSON=path to change it) and `docs/bench.svg` from it.
 * Flood size: BENCH_COUNT (per flooder, default 200000), BENCH_SECONDS (hard bound per flooder,
 * default 30), BENCH_FLOODERS (4), BENCH_PRELOAD (16); BENCH_ONLY=name,… runs only those modules. `--quick` (a CI smoke run) lowers the
 * defaults to 20000 requests / 3 s per flooder, 20000 / 1 s per service row and 10⁵ requests for
 * the memory rows. A progress bar goes to stderr. Only root can create the namespaces;
 * everything runs inside them.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { cpus, release } from "node:os";
import { fileURLToPath } from "node:url";
import { writeChart } from "./chart.js";
import {
  type BenchModule,
  type BenchRow,
  floodOptionsFromEnv,
  kernelBaselineBench,
} from "./flood.js";
import { type FootprintResult, footprintBench, footprintResults } from "./footprint.js";
import { type MemoryResult, memoryBench, memoryResults } from "./memory.js";
import { gvisorBench, nfqueueBench } from "./peers.js";
import { type ServiceBenchRow, serviceBench, serviceResults } from "./service.js";
import { stackResponderBench } from "./stack-responder.js";
import { tracingResults } from "./tracing-rounds.js";
import { forwarderBench, remoteBench, remotePeaks } from "./tun-handlers.js";
import { tunResponderBench } from "./tun-responder.js";

const QUICK = process.argv.includes("--quick");
if (QUICK) {
  const defaults: Record<string, string> = {
    BENCH_COUNT: "20000",
    BENCH_SECONDS: "3",
    BENCH_SERVICE_COUNT: "20000",
    BENCH_SERVICE_SECONDS: "1",
    BENCH_MEMORY_REQUESTS: "100000",
    BENCH_MEMORY_SECONDS: "20",
  };
  for (const [k, v] of Object.entries(defaults)) process.env[k] ??= v;
}

// Add a benchmark by appending its module; the baseline's row is the ratios' denominator.
// `weight`: its rough share of the run's time, for the progress bar.
const modules: { module: BenchModule; weight: number }[] = [
  { module: kernelBaselineBench, weight: 1 },
  { module: tunResponderBench, weight: 1 },
  { module: stackResponderBench, weight: 1 },
  { module: forwarderBench, weight: 3 },
  { module: remoteBench, weight: 6 },
  { module: gvisorBench, weight: 1.5 },
  { module: nfqueueBench, weight: 2 },
  // Prints its own table (decisions/s and latency vs a bare grpc-js stream); no flood.
  { module: serviceBench, weight: 8 },
  // RSS and heap after 10⁶ requests and with a stalled client; no flood.
  { module: memoryBench, weight: 2 },
  // The real daemon's RSS at rest and with idle sessions and connections; no flood.
  { module: footprintBench, weight: 2 },
];

/** The bare addon responder: the ceiling the netstack rows are compared with. */
const BARE = "tun-responder";

/** A one-line progress bar on stderr: done weight / total, current module, elapsed time. */
class Progress {
  private done = 0;
  private current = "";
  private readonly start = Date.now();
  private timer: NodeJS.Timeout | null = null;
  constructor(private readonly total: number) {}

  begin(name: string): void {
    this.current = name;
    this.draw();
    if (!process.stderr.isTTY) return;
    this.timer ??= setInterval(() => this.draw(), 1000);
    this.timer.unref();
  }

  end(weight: number): void {
    this.done += weight;
    this.draw();
  }

  finish(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.current = "done";
    this.draw();
    if (process.stderr.isTTY) process.stderr.write("\n");
  }

  private draw(): void {
    const width = 30;
    const filled = Math.round((this.done / this.total) * width);
    const secs = Math.round((Date.now() - this.start) / 1000);
    const line = `bench [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${Math.round((this.done / this.total) * 100)}% ${this.current} (${secs} s)`;
    if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${line}`);
    else process.stderr.write(`${line}\n`);
  }
}

function formatRate(n: number): string {
  return n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0);
}

function printTable(header: readonly string[], body: readonly (readonly string[])[]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const row of body) console.log(line(row));
}

/** CPU seconds per 100k replies (or decisions). */
function cpuPer100k(r: BenchRow): number | null {
  if (r.cpuSeconds === undefined || r.cpuSeconds === null || r.received === 0) return null;
  return (r.cpuSeconds / r.received) * 1e5;
}

function printMainTable(rows: readonly BenchRow[]): void {
  const bare = rows.find((r) => r.module === BARE) ?? null;
  printTable(
    [
      "mechanism",
      "replies/s",
      "rtt avg",
      "ratio vs kernel",
      "ratio vs bare",
      "cpu s/100k",
      "lost",
      "notes",
    ],
    rows
      .filter((r) => r.module !== "memory" && r.module !== "footprint")
      .map((r) => {
        const cpu = cpuPer100k(r);
        return [
          r.mechanism,
          formatRate(r.repliesPerSecond),
          r.rttAvgMs === null ? "–" : `${r.rttAvgMs.toFixed(3)} ms`,
          r.ratioVsKernel === null ? "–" : r.ratioVsKernel.toFixed(2),
          bare === null || r.module === "kernel" || r.module === "service"
            ? "–"
            : (r.repliesPerSecond / bare.repliesPerSecond).toFixed(2),
          cpu === null ? "–" : cpu.toFixed(2),
          String(r.transmitted - r.received),
          r.notes,
        ];
      }),
  );
}

function printMemoryTable(rows: readonly MemoryResult[]): void {
  printTable(
    [
      "memory",
      "requests",
      "RSS before → after",
      "RSS growth",
      "heap before → after",
      "young gen (committed) before → after",
      "held",
    ],
    rows.map((r) => [
      r.name,
      String(r.requests),
      `${r.rssBeforeMB.toFixed(1)} → ${r.rssAfterMB.toFixed(1)} MB`,
      `${(r.rssAfterMB - r.rssBeforeMB).toFixed(1)} MB`,
      `${r.heapBeforeMB.toFixed(1)} → ${r.heapAfterMB.toFixed(1)} MB`,
      `${r.youngPhysicalBeforeMB.toFixed(1)} → ${r.youngPhysicalAfterMB.toFixed(1)} MB (of ${r.youngAfterMB.toFixed(0)})`,
      r.maxHeld === undefined ? "–" : `${r.maxHeld} (max_in_flight ${r.maxInFlight})`,
    ]),
  );
}

function printFootprintTable(rows: readonly FootprintResult[]): void {
  if (rows.length === 0) return;
  printTable(
    ["footprint", "baseline", "RSS", "5 s later", "target"],
    rows.map((r) => [
      r.name,
      `${r.baselineMB.toFixed(1)} MiB (${r.baseline})`,
      `${r.measuredMB.toFixed(1)} MiB (${r.growth ? `+${(r.measuredMB - r.baselineMB).toFixed(1)}` : "absolute"})`,
      r.settledMB === null
        ? "–"
        : `${r.settledMB.toFixed(1)} MiB (+${(r.settledMB - r.baselineMB).toFixed(1)})`,
      `${r.growth ? "+" : "≤ "}${r.limitMB} MiB`,
    ]),
  );
}

/** Footprint targets: at rest absolute; idle load as growth over rest, once settled. */
function footprintTargets(rows: readonly FootprintResult[]): Target[] {
  return rows.map((r) => {
    const value = r.growth ? (r.settledMB ?? r.measuredMB) - r.baselineMB : r.measuredMB;
    return {
      target: r.growth
        ? `${r.name.replace(/^icmpfwd serve with /, "")}: RSS ≤ +${r.limitMB} MiB`
        : `${r.name}: RSS ≤ ${r.limitMB} MiB`,
      measured: r.growth
        ? `+${value.toFixed(1)} MiB 5 s after they are up (+${(r.measuredMB - r.baselineMB).toFixed(1)} at once) over ${r.baselineMB.toFixed(1)} at rest`
        : `${value.toFixed(1)} MiB (${r.baseline} ${r.baselineMB.toFixed(1)} MiB)${r.repliesPerSecond === undefined ? "" : `; ${Math.round(r.repliesPerSecond)} decided replies/s`}`,
      ratio: value / r.limitMB,
      met: value <= r.limitMB,
    };
  });
}

export interface Target {
  target: string;
  measured: string;
  ratio: number | null;
  met: boolean | null;
}

function targets(
  rows: readonly BenchRow[],
  svc: readonly ServiceBenchRow[],
  mem: readonly MemoryResult[],
): Target[] {
  const rate = (pred: (r: BenchRow) => boolean): number | null =>
    rows.find(pred)?.repliesPerSecond ?? null;
  const stack = rate((r) => r.module === "stack-responder");
  const bare = rate((r) => r.module === BARE);
  const gvisor = rate((r) => r.module === "gvisor");
  const fwdSync = rate((r) => r.module === "forwarder" && r.mechanism.includes("(sync)"));
  const nfqPer = rate((r) => r.module === "nfqueue" && r.mechanism.includes("per-packet"));
  const nfqBatched = rate((r) => r.module === "nfqueue" && r.mechanism.includes("batched"));
  const remote = rate((r) => r.module === "remote" && r.mechanism.endsWith("4 clients, batch 128"));
  const ratioTarget = (
    target: string,
    a: number | null,
    b: number | null,
    min: number,
    what: string,
  ): Target => {
    if (a === null || b === null || b === 0) {
      return { target, measured: "not measured", ratio: null, met: null };
    }
    const ratio = a / b;
    return {
      target,
      measured: `${formatRate(a)} / ${formatRate(b)} (${what})`,
      ratio,
      met: ratio >= min,
    };
  };
  const out: Target[] = [
    ratioTarget("built-in Echo Reply ≥ 0.7× bare addon responder", stack, bare, 0.7, "replies/s"),
    ratioTarget("built-in Echo Reply ≥ 1.5× gVisor", stack, gvisor, 1.5, "replies/s"),
    ratioTarget(
      "in-process Forwarder handler (sync) ≥ 1.2× NFQUEUE batched",
      fwdSync,
      nfqBatched,
      1.2,
      "replies/s",
    ),
    ratioTarget(
      "remote decisions through the TUN (4 clients, batch 128) ≥ 1× NFQUEUE per-packet",
      remote,
      nfqPer,
      1,
      "replies/s",
    ),
  ];
  // Decision path vs the bare stream at equal batch size: the worst closed-loop pair.
  const pairs = svc.filter(
    (r) => r.mechanism === "service" && r.offeredPerSecond === null && r.ratioVsBare !== null,
  );
  const closed = pairs.filter((r) => !/tracing/.test(r.name));
  if (closed.length > 0) {
    const worst = closed.reduce((a, b) => ((a.ratioVsBare ?? 0) <= (b.ratioVsBare ?? 0) ? a : b));
    const best = closed.reduce((a, b) => ((a.ratioVsBare ?? 0) >= (b.ratioVsBare ?? 0) ? a : b));
    out.push({
      target: "decision path ≥ 0.8× bare grpc-js stream at equal batch size (worst pair)",
      measured: `worst ${worst.streams}×${worst.batch}: ${worst.ratioVsBare?.toFixed(2)}; best ${best.streams}×${best.batch}: ${best.ratioVsBare?.toFixed(2)}`,
      ratio: worst.ratioVsBare,
      met: (worst.ratioVsBare ?? 0) >= 0.8,
    });
  } else {
    out.push({
      target: "decision path ≥ 0.8× bare grpc-js stream",
      measured: "not measured",
      ratio: null,
      met: null,
    });
  }
  // What tracing costs (issue "Footprint and tracing cost"): decisions/s against tracing off,
  // 1 stream × 16, the median of interleaved rounds' ratios (tracing-rounds.ts).
  const rounds = tracingResults[0];
  const tracingTarget = (target: string, k: "oneVsOff" | "allVsOff", min: number): Target => {
    if (rounds === undefined) return { target, measured: "not measured", ratio: null, met: null };
    const s = rounds[k];
    const cpu = rounds[k === "oneVsOff" ? "oneVsOffCpu" : "allVsOffCpu"];
    return {
      target,
      measured: `median of ${rounds.rounds.length} rounds' ratios (decisions/s), ${s.min.toFixed(2)}–${s.max.toFixed(2)}${cpu === null ? "" : `; server CPU per decision ${cpu.median.toFixed(2)} (${cpu.min.toFixed(2)}–${cpu.max.toFixed(2)})`}`,
      ratio: s.median,
      met: s.median >= min,
    };
  };
  out.push(
    tracingTarget("tracing at 1 % sampling ≥ 0.9× tracing off (1 stream × 16)", "oneVsOff", 0.9),
    tracingTarget("tracing at 100 % sampling ≥ 0.5× tracing off (1 stream × 16)", "allVsOff", 0.5),
  );
  const paced = svc.find((r) => r.mechanism === "service" && r.offeredPerSecond === 10_000);
  out.push(
    paced === undefined
      ? {
          target: "p99 added latency < 1 ms at 10k req/s",
          measured: "not measured",
          ratio: null,
          met: null,
        }
      : {
          target: "p99 added latency < 1 ms at 10k req/s",
          measured: `p99 ${paced.p99Ms.toFixed(3)} ms (p50 ${paced.p50Ms.toFixed(3)}, p99.9 ${paced.p999Ms.toFixed(3)})`,
          ratio: paced.p99Ms / 1,
          met: paced.p99Ms < 1,
        },
  );
  const steady = mem.find((r) => r.maxHeld === undefined);
  out.push(
    steady === undefined
      ? {
          target: "RSS growth < 10 MB over 10⁶ requests",
          measured: "not measured",
          ratio: null,
          met: null,
        }
      : ((): Target => {
          // V8's young generation grows to its configured bound (2 × --max-semi-space-size)
          // when the allocation rate calls for it: bounded memory, not growth per request, so
          // the target is judged on the RSS growth outside it; both are printed.
          const rss = steady.rssAfterMB - steady.rssBeforeMB;
          const young = steady.youngPhysicalAfterMB - steady.youngPhysicalBeforeMB;
          const outside = rss - young;
          return {
            target: "RSS growth < 10 MB over 10⁶ requests (outside V8's young generation)",
            measured: `${outside.toFixed(1)} MB outside the young generation (RSS ${rss.toFixed(1)} MB, young generation ${young.toFixed(1)} MB, at most ${steady.youngAfterMB.toFixed(0)} MB) over ${steady.decided} requests${steady.decided < 1e6 ? " (fewer than 10⁶: --quick or bounded)" : ""}`,
            ratio: outside / 10,
            met: outside < 10,
          };
        })(),
  );
  const stalled = mem.find((r) => r.maxHeld !== undefined);
  out.push(
    stalled?.maxHeld === undefined || stalled.maxInFlight === undefined
      ? {
          target: "a stalled client costs at most its max_in_flight packets",
          measured: "not measured",
          ratio: null,
          met: null,
        }
      : {
          target: "a stalled client costs at most its max_in_flight packets",
          measured: `held at most ${stalled.maxHeld} of max_in_flight ${stalled.maxInFlight}; ${stalled.fellThrough} fell through; RSS +${(stalled.rssAfterMB - stalled.rssBeforeMB).toFixed(1)} MB`,
          ratio: stalled.maxHeld / stalled.maxInFlight,
          met: stalled.maxHeld <= stalled.maxInFlight,
        },
  );
  out.push(...footprintTargets(footprintResults));
  return out;
}

function machine(): { nproc: number; cpu: string; kernel: string } {
  let cpu = cpus()[0]?.model ?? "unknown";
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m) cpu = m[1].trim();
  } catch {}
  let nproc = cpus().length;
  try {
    nproc = Number(execFileSync("nproc", { encoding: "utf8" }).trim());
  } catch {}
  return { nproc, cpu, kernel: release() };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new Error("the benchmark creates network namespaces and TUN devices: run it as root");
  }
  const o = floodOptionsFromEnv();
  const host = machine();
  console.log(
    `${QUICK ? "QUICK smoke run; " : ""}flood: ${o.flooders} × ping -f -l ${o.preload} -c ${o.count}, at most ${o.seconds} s each`,
  );
  console.log(`machine: ${host.nproc} × ${host.cpu}, Linux ${host.kernel}`);
  // BENCH_ONLY=kernel,forwarder runs only those modules (comparing one change; its targets
  // whose rows were not run print "not measured").
  const only = process.env.BENCH_ONLY?.split(",").map((s) => s.trim());
  const unknown = only?.filter((n) => !modules.some((m) => m.module.name === n)) ?? [];
  if (unknown.length > 0) {
    throw new Error(
      `BENCH_ONLY: unknown module ${unknown.join(", ")} (known: ${modules.map((m) => m.module.name).join(", ")})`,
    );
  }
  const selected = modules.filter((m) => only === undefined || only.includes(m.module.name));
  const progress = new Progress(selected.reduce((n, m) => n + m.weight, 0));
  const measured: { module: BenchModule; rows: Awaited<ReturnType<BenchModule["run"]>> }[] = [];
  for (const { module, weight } of selected) {
    progress.begin(module.name);
    measured.push({ module, rows: await module.run(o) });
    progress.end(weight);
  }
  progress.finish();
  const kernel = measured.find((m) => m.module.baseline)?.rows[0] ?? null;
  const rows: BenchRow[] = measured.flatMap(({ module, rows: ms }) =>
    ms.map((m) => ({
      ...m,
      module: module.name,
      ratioVsKernel:
        module.baseline || kernel === null ? null : m.repliesPerSecond / kernel.repliesPerSecond,
    })),
  );
  console.log();
  printMainTable(rows);
  console.log();
  printMemoryTable(memoryResults);
  console.log();
  printFootprintTable(footprintResults);
  console.log();
  const t = targets(rows, serviceResults, memoryResults);
  printTable(
    ["target", "measured", "ratio", "met"],
    t.map((x) => [
      x.target,
      x.measured,
      x.ratio === null ? "–" : x.ratio.toFixed(2),
      x.met === null ? "–" : x.met ? "met" : "NOT met",
    ]),
  );
  const root = fileURLToPath(new URL("../../", import.meta.url));
  const jsonPath = process.env.BENCH_JSON || `${root}bench-results.json`;
  writeFileSync(
    jsonPath,
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        quick: QUICK,
        machine: host,
        flood: o,
        rows: rows.map((r) => ({ ...r, cpuSecondsPer100k: cpuPer100k(r) })),
        service: serviceResults,
        memory: memoryResults,
        footprint: footprintResults,
        tracing: tracingResults[0] ?? null,
        remotePeaks,
        targets: t,
      },
      null,
      2,
    )}\n`,
  );
  const svgPath = process.env.BENCH_SVG || `${root}docs/bench.svg`;
  writeChart(jsonPath, svgPath);
  console.log(`results written to ${jsonPath}, chart to ${svgPath}`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  },
);
