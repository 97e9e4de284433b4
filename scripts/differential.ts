/**
 * `npm run conformance`: the large differential run — 3 seeds × 3,000 inputs (DIFF_RUNS,
 * DIFF_SEEDS="1,2,3") through icmpfwd and gVisor's netstack; prints the table of classes and
 * counts and exits non-zero on any difference outside test/differential/known.ts.
 */
import { KNOWN } from "../test/differential/known.js";
import { buildPeer, GvisorPeer, peerPrerequisite } from "../test/differential/peer.js";
import { differentialRun, formatUnknown, type RunResult } from "../test/differential/run.js";

const runs = Number(process.env.DIFF_RUNS ?? 3000);
const seeds = (process.env.DIFF_SEEDS ?? "1,2,3").split(",").map(Number);

const prereq = peerPrerequisite();
if (!prereq.ok) {
  console.error(`conformance: ${prereq.reason}`);
  process.exit(1);
}
const started = performance.now();
const peer = new GvisorPeer(buildPeer());
const results: RunResult[] = [];
for (const seed of seeds) results.push(await differentialRun(peer, seed, runs));
await peer.close();
const seconds = (performance.now() - started) / 1000;

const rows: Array<[string, ...number[]]> = [["identical", ...results.map((r) => r.same)]];
for (const k of KNOWN)
  rows.push([`known ${k.kind}: ${k.id}`, ...results.map((r) => r.known.get(k.id) ?? 0)]);
const classes = new Set(results.flatMap((r) => [...r.unknown.keys()]));
for (const c of classes)
  rows.push([`UNKNOWN ${c}`, ...results.map((r) => r.unknown.get(c)?.count ?? 0)]);
const width = Math.max(...rows.map((r) => r[0].length));
console.log(`differential: ${runs} inputs × seeds ${seeds.join(", ")} in ${seconds.toFixed(1)} s`);
console.log(
  `${"class".padEnd(width)}  ${seeds.map((s) => `seed ${s}`.padStart(8)).join(" ")}     total`,
);
for (const [name, ...n] of rows)
  console.log(
    `${name.padEnd(width)}  ${n.map((x) => String(x).padStart(8)).join(" ")} ${String(n.reduce((a, b) => a + b, 0)).padStart(9)}`,
  );
const unknown = results.reduce((n, r) => n + r.unknown.size, 0);
if (unknown > 0) {
  for (const r of results) if (r.unknown.size > 0) console.log(formatUnknown(r));
  process.exit(1);
}
console.log("no difference outside the known list");
