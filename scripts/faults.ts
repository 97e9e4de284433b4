/**
 * `npm run faults`: the long fault-injection runs of issue #14 — 10,000 Echo Requests/s for 60 s
 * on the channel link, then the kernel's ping through a real TUN in a private namespace (root),
 * with policy clients killed, reset, restarted and drained every 100 ms. Prints one table per
 * run; exits 1 when any rule broke (every request id has exactly one outcome, replies match
 * outcomes, nothing pending, RSS back within 10 MiB).
 *
 * FAULTS_LINK=channel|tun|both (both), FAULTS_SECONDS (60), FAULTS_RATE (10000),
 * FAULTS_TUN_RATE (1000), FAULTS_CHAOS_MS (100), FAULTS_SEED (14).
 */
import { accessSync, constants } from "node:fs";
import { BenchNetns } from "../test/bench/flood.js";
import { formatReport, runFaults } from "../test/faults/runner.js";

function tunReady(): string | null {
  if (process.getuid?.() !== 0) return "needs root";
  try {
    accessSync("/dev/net/tun", constants.R_OK | constants.W_OK);
    return null;
  } catch {
    return "needs /dev/net/tun";
  }
}

const env = (k: string, d: number): number => (process.env[k] ? Number(process.env[k]) : d);
const which = process.env.FAULTS_LINK ?? "both";
const seconds = env("FAULTS_SECONDS", 60);
const common = {
  seconds,
  chaosEveryMs: env("FAULTS_CHAOS_MS", 100),
  seed: env("FAULTS_SEED", 14),
  log: (l: string) => console.log(l),
};
let failed = false;
if (which === "channel" || which === "both") {
  const r = await runFaults({ ...common, link: "channel", rate: env("FAULTS_RATE", 10_000) });
  console.log(`\n${formatReport(r)}\n`);
  failed ||= r.problems.length > 0;
}
if (which === "tun" || which === "both") {
  const why = tunReady();
  if (why !== null) {
    console.log(`tun run skipped: ${why}`);
    failed ||= which === "tun";
  } else {
    const ns = await BenchNetns.create("faults");
    try {
      const r = await runFaults({
        ...common,
        link: "tun",
        rate: env("FAULTS_TUN_RATE", 1000),
        netns: { path: ns.path, run: (c, t) => ns.exec("sh", ["-c", c], t) },
      });
      console.log(`\n${formatReport(r)}\n`);
      failed ||= r.problems.length > 0;
    } finally {
      await ns.destroy();
    }
  }
}
process.exit(failed ? 1 : 0);
