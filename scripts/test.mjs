#!/usr/bin/env node
// `npm test`: unit and integration tests in parallel, then the e2e files one at a time (real
// TUN devices in private network namespaces), then the local-cluster test (docker-compose on an
// engine in a private namespace), then one closing line with the totals.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "icmpfwd-summary-"));
const summary = join(dir, "summary.jsonl");
const extra = process.argv.slice(2);
let status = 0;
for (const project of ["unit", "e2e", "cluster"]) {
  const r = spawnSync("npx", ["vitest", "run", "--project", project, ...extra], {
    stdio: "inherit",
    env: { ...process.env, ICMPFWD_TEST_SUMMARY: summary },
  });
  if (r.status !== 0) status = r.status ?? 1;
}
const total = { passed: 0, failed: 0, skipped: 0 };
let lines = [];
try {
  lines = readFileSync(summary, "utf8").split("\n").filter(Boolean);
} catch {
  // No project reported: vitest itself failed to start; the status says so.
}
for (const line of lines) {
  const c = JSON.parse(line);
  total.passed += c.passed;
  total.failed += c.failed;
  total.skipped += c.skipped;
}
rmSync(dir, { recursive: true, force: true });
if (total.passed + total.failed === 0 && status === 0) status = 1;
process.stdout.write(
  `\ntests: ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped\n`,
);
process.exit(status !== 0 ? status : total.failed > 0 ? 1 : 0);
