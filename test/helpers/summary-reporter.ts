import { appendFileSync } from "node:fs";
import type { Reporter, TestModule } from "vitest/node";

/**
 * Counts the run's tests. With ICMPFWD_TEST_SUMMARY set it appends the counts as a JSON line
 * to that file (scripts/test.mjs adds the projects up and prints the closing line); otherwise it
 * prints the plain closing line `tests: N passed, N failed, N skipped` itself.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, errors: ReadonlyArray<unknown>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const m of testModules) {
      if (m.state() === "failed" && [...m.children.allTests()].length === 0) failed++;
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failed++;
        else skipped++;
      }
    }
    failed += errors.length;
    const file = process.env.ICMPFWD_TEST_SUMMARY;
    if (file) appendFileSync(file, `${JSON.stringify({ passed, failed, skipped })}\n`);
    else process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
