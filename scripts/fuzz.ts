/**
 * `npm run fuzz`: 10⁶ random and mutated packets through the whole receive path (FUZZ_RUNS to
 * change it); prints the rate and the histogram of the counters the packets ended in.
 */
import fc from "fast-check";
import { checkOne, fuzzStack, histogram, packetArbitrary } from "../test/fuzz/receive-path.js";

const runs = Number(process.env.FUZZ_RUNS ?? 1_000_000);
const t = fuzzStack();
const start = process.hrtime.bigint();
fc.assert(
  fc.property(packetArbitrary(), (p) => {
    checkOne(t, p);
  }),
  { numRuns: runs, seed: process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined },
);
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
console.log(
  `${runs} packets in ${seconds.toFixed(1)} s: ${Math.round(runs / seconds)} packets/s, no exception, one disposition each`,
);
const h = histogram(t.stack.stats);
const width = Math.max(...Object.keys(h).map((k) => k.length));
for (const [k, v] of Object.entries(h)) console.log(`${k.padEnd(width)}  ${v}`);
