/**
 * `npm run bench`: runs every module in `modules` under the same bounded flood and prints one
 * table; `BENCH_JSON=path` also writes the rows as JSON. Flood size: BENCH_COUNT (per flooder,
 * default 200000), BENCH_SECONDS (hard bound per flooder, default 30), BENCH_FLOODERS (4),
 * BENCH_PRELOAD (16). Only root can create the namespaces; everything runs inside them.
 */
import { writeFileSync } from "node:fs";
import {
  type BenchModule,
  type BenchRow,
  floodOptionsFromEnv,
  kernelBaselineBench,
} from "./flood.js";
import { gvisorBench, nfqueueBench } from "./peers.js";
import { serviceBench } from "./service.js";
import { stackResponderBench } from "./stack-responder.js";
import { tunResponderBench } from "./tun-responder.js";

// Add a benchmark by appending its module; the baseline's row is the ratios' denominator.
const modules: BenchModule[] = [
  kernelBaselineBench,
  tunResponderBench,
  stackResponderBench,
  gvisorBench,
  nfqueueBench,
  // Prints its own table (decisions/s and latency vs a bare grpc-js stream); no flood.
  serviceBench,
];

/** The bare addon responder: the ceiling the netstack rows are compared with. */
const BARE = "tun-responder";

function formatRate(n: number): string {
  return n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0);
}

function printTable(rows: readonly BenchRow[]): void {
  const bare = rows.find((r) => r.module === BARE) ?? null;
  const header = [
    "mechanism",
    "replies/s",
    "rtt avg",
    "ratio vs kernel",
    "ratio vs bare",
    "lost",
    "notes",
  ];
  const body = rows.map((r) => [
    r.mechanism,
    formatRate(r.repliesPerSecond),
    r.rttAvgMs === null ? "–" : `${r.rttAvgMs.toFixed(3)} ms`,
    r.ratioVsKernel === null ? "–" : r.ratioVsKernel.toFixed(2),
    bare === null || r.module === "kernel"
      ? "–"
      : (r.repliesPerSecond / bare.repliesPerSecond).toFixed(2),
    String(r.transmitted - r.received),
    r.notes,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const row of body) console.log(line(row));
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new Error("the benchmark creates network namespaces and TUN devices: run it as root");
  }
  const o = floodOptionsFromEnv();
  console.log(
    `flood: ${o.flooders} × ping -f -l ${o.preload} -c ${o.count}, at most ${o.seconds} s each`,
  );
  const measured: { module: BenchModule; rows: Awaited<ReturnType<BenchModule["run"]>> }[] = [];
  for (const module of modules) {
    process.stderr.write(`bench: ${module.name}…\n`);
    measured.push({ module, rows: await module.run(o) });
  }
  const kernel = measured.find((m) => m.module.baseline)?.rows[0] ?? null;
  const rows: BenchRow[] = measured.flatMap(({ module, rows: ms }) =>
    ms.map((m) => ({
      ...m,
      module: module.name,
      ratioVsKernel:
        module.baseline || kernel === null ? null : m.repliesPerSecond / kernel.repliesPerSecond,
    })),
  );
  printTable(rows);
  const jsonPath = process.env.BENCH_JSON;
  if (jsonPath) {
    writeFileSync(jsonPath, `${JSON.stringify({ flood: o, rows }, null, 2)}\n`);
    console.log(`rows written to ${jsonPath}`);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  },
);
