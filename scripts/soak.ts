/**
 * `npm run soak`: the service under steady load with faults for 10 minutes (bounded), on the
 * channel link: Echo Requests at SOAK_RATE/s (5000), a policy-client fault every SOAK_CHAOS_MS
 * (1000: kill, reset, restart, half-close or drain), one stalled client, late and duplicate
 * verdicts. At the end every request id must have exactly one outcome (runner.ts). Prints a
 * table — requests, outcomes by cause, max RSS, max event-loop lag, errors — and writes it to
 * docs/soak.md (SOAK_OUT to change). SOAK_SECONDS (600), SOAK_SEED (14).
 */
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { CAUSES } from "../test/faults/ledger.js";
import { type FaultReport, formatReport, mb, runFaults } from "../test/faults/runner.js";

const env = (k: string, d: number): number => (process.env[k] ? Number(process.env[k]) : d);
const seconds = env("SOAK_SECONDS", 600);
const rate = env("SOAK_RATE", 5000);
const out = process.env.SOAK_OUT ?? "docs/soak.md";

const errors: string[] = [];
process.on("uncaughtException", (e) => errors.push(`uncaught: ${e.stack ?? e}`));
process.on("unhandledRejection", (e) => errors.push(`unhandled rejection: ${String(e)}`));

const started = new Date();
const r: FaultReport = await runFaults({
  link: "channel",
  rate,
  seconds,
  chaosEveryMs: env("SOAK_CHAOS_MS", 1000),
  seed: env("SOAK_SEED", 14),
  log: (l) => console.log(l),
});
errors.push(...r.problems);

const byCause: Record<string, number> = {};
for (const [k, v] of Object.entries(r.outcomes)) {
  const cause = k.split(".")[1];
  byCause[cause] = (byCause[cause] ?? 0) + v;
}
const total = Object.values(byCause).reduce((a, b) => a + b, 0);
const pct = (n: number): string => `${((100 * n) / Math.max(1, total)).toFixed(1)}%`;
const lines = [
  `# Soak run`,
  "",
  `\`npm run soak\`, ${started.toISOString()}, ${cpus().length} CPUs, Node ${process.version}: the channel link at ${rate} Echo Requests/s for ${r.seconds.toFixed(0)} s, a policy-client fault every ${env("SOAK_CHAOS_MS", 1000)} ms, one stalled client, late and duplicate verdicts (test/faults/runner.ts).`,
  "",
  "| measure | value |",
  "|---|---|",
  `| requests (checked per id: exactly one outcome each) | ${r.requests} |`,
  ...CAUSES.filter((c) => byCause[c] !== undefined).map(
    (c) => `| outcomes: ${c} | ${byCause[c]} (${pct(byCause[c])}) |`,
  ),
  `| Echo Replies (of which synthetic) | ${r.answered} (${r.synthetic}) |`,
  `| client faults | ${Object.entries(r.tally.faults)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ")} |`,
  `| rejections | ${Object.entries(r.tally.rejections)
    .map(([k, v]) => `${k.replace("REJECTION_REASON_", "").toLowerCase()} ${v}`)
    .join(", ")} |`,
  `| max RSS | ${mb(r.rss.maxBytes)} MiB (start ${mb(r.rss.startBytes)}, end ${mb(r.rss.endBytes)}) |`,
  `| V8 heap used after GC, start → end | ${mb(r.heapUsed.startBytes)} → ${mb(r.heapUsed.endBytes)} MiB |`,
  `| max event-loop lag | ${r.maxLagMs.toFixed(1)} ms |`,
  `| pending / deadline timers after the run | ${r.pending} / ${r.timerArmed ? "armed" : "none"} |`,
  `| errors | ${errors.length === 0 ? "none" : errors.length} |`,
  "",
  ...(errors.length > 0 ? ["Errors:", "", ...errors.map((e) => `- ${e}`), ""] : []),
  "<details><summary>Full report</summary>",
  "",
  formatReport(r),
  "",
  "</details>",
  "",
];
const text = lines.join("\n");
console.log(`\n${text}`);
writeFileSync(out, text);
console.log(`written to ${out}`);
process.exit(errors.length === 0 ? 0 : 1);
