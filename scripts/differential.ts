/**
 * `npm run conformance`: the large differential run — 3 seeds × 3,000 inputs (DIFF_RUNS,
 * DIFF_SEEDS="1,2,3") through icmpfwd and gVisor's netstack, through real TUN devices in a
 * private namespace (DIFF_MODE=tun, the default; needs root) or in memory (DIFF_MODE=memory);
 * prints the table of classes and counts and exits non-zero on any difference outside
 * test/differential/known.ts.
 */
import { KNOWN } from "../test/differential/known.js";
import { buildGo, GvisorPeer, peerPrerequisite } from "../test/differential/peer.js";
import {
  differentialRun,
  formatUnknown,
  MemoryStacks,
  type RunResult,
  type Stacks,
} from "../test/differential/run.js";
import { TunStacks } from "../test/differential/tun.js";

const runs = Number(process.env.DIFF_RUNS ?? 3000);
const seeds = (process.env.DIFF_SEEDS ?? "1,2,3").split(",").map(Number);
const mode = process.env.DIFF_MODE ?? "tun";
if (mode !== "tun" && mode !== "memory") {
  console.error(`conformance: DIFF_MODE is "tun" or "memory", not ${JSON.stringify(mode)}`);
  process.exit(2);
}

const prereq = peerPrerequisite();
if (!prereq.ok) {
  console.error(`conformance: ${prereq.reason}`);
  process.exit(1);
}
if (mode === "tun" && process.getuid?.() !== 0) {
  console.error("conformance: the TUN mode needs root (or DIFF_MODE=memory)");
  process.exit(1);
}
const started = performance.now();
const peerBinary = buildGo("gvisor-peer");
let close: () => Promise<void>;
let stacks: Stacks;
if (mode === "tun") {
  const tun = await TunStacks.open(peerBinary, buildGo("tun-tap"));
  stacks = tun;
  close = () => tun.close();
} else {
  const peer = new GvisorPeer(peerBinary);
  stacks = new MemoryStacks(peer);
  close = () => peer.close();
}
const results: RunResult[] = [];
try {
  for (const seed of seeds) results.push(await differentialRun(stacks, seed, runs));
} finally {
  await close();
}
const seconds = (performance.now() - started) / 1000;

const rows: Array<[string, ...number[]]> = [["identical", ...results.map((r) => r.same)]];
for (const k of KNOWN)
  rows.push([`known ${k.kind}: ${k.id}`, ...results.map((r) => r.known.get(k.id) ?? 0)]);
const skips = new Set(results.flatMap((r) => [...r.skipped.keys()]));
for (const s of skips) rows.push([`not sent: ${s}`, ...results.map((r) => r.skipped.get(s) ?? 0)]);
const classes = new Set(results.flatMap((r) => [...r.unknown.keys()]));
for (const c of classes)
  rows.push([`UNKNOWN ${c}`, ...results.map((r) => r.unknown.get(c)?.count ?? 0)]);
const width = Math.max(...rows.map((r) => r[0].length));
console.log(
  `differential (${mode === "tun" ? "through TUN devices" : "in memory"}): ${runs} inputs × seeds ${seeds.join(", ")} in ${seconds.toFixed(1)} s`,
);
console.log(
  `${"class".padEnd(width)}  ${seeds.map((s) => `seed ${s}`.padStart(8)).join(" ")}     total`,
);
for (const [name, ...n] of rows)
  console.log(
    `${name.padEnd(width)}  ${n.map((x) => String(x).padStart(8)).join(" ")} ${String(n.reduce((a, b) => a + b, 0)).padStart(9)}`,
  );
console.log("one example of each known difference:");
for (const k of KNOWN) {
  const example = results.map((r) => r.knownExample.get(k.id)).find((e) => e !== undefined);
  console.log(`  ${k.id} (${k.where}): ${example ?? "not reached"}`);
}
const unknown = results.reduce((n, r) => n + r.unknown.size, 0);
if (unknown > 0) {
  for (const r of results) if (r.unknown.size > 0) console.log(formatUnknown(r));
  process.exit(1);
}
console.log("no difference outside the known list");
