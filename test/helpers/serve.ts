/** Runs the built `icmpfwd serve` inside a test namespace and reads its stats file. */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Netns, type Spawned, tempDir, waitFor } from "./netns.js";

export const MAIN_JS = fileURLToPath(new URL("../../dist/main.js", import.meta.url));

const VERDICTS = ["service.outcomes.consume.verdict", "service.outcomes.reply.verdict"] as const;

export interface ServeProcess {
  proc: Spawned;
  statsFile: string;
  /** The counters as last written (empty before the first write). */
  stats(): Record<string, number>;
  /** Waits until `pred` holds for the written counters. */
  waitStats(
    pred: (s: Record<string, number>) => boolean,
    what: string,
    timeoutMs?: number,
  ): Promise<Record<string, number>>;
  /**
   * Waits until `total` requests (counted from `since`) have a consume or reply verdict. The
   * stats file is a periodic snapshot, so check each verdict only after all have landed.
   */
  waitVerdicts(total: number, since?: Record<string, number>): Promise<Record<string, number>>;
  /** Sends a signal and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export async function startServe(
  ns: Netns,
  args: readonly string[] = [],
  env?: NodeJS.ProcessEnv,
): Promise<ServeProcess> {
  if (!existsSync(MAIN_JS)) throw new Error(`${MAIN_JS} is missing: run npm run build first`);
  const statsFile = join(tempDir("icmpfwd-stats-"), "stats.json");
  const proc = ns.spawnNode(
    MAIN_JS,
    ["serve", "--stats-file", statsFile, "--stats-interval-ms", "50", ...args],
    env === undefined ? undefined : { ...process.env, ...env },
  );
  await waitFor(() => proc.output().includes('"msg":"serving"') || proc.child.exitCode !== null, {
    what: "icmpfwd serve to start",
    timeoutMs: 15_000,
  });
  if (proc.child.exitCode !== null) throw new Error(`icmpfwd serve exited: ${proc.output()}`);
  const stats = (): Record<string, number> => {
    try {
      return JSON.parse(readFileSync(statsFile, "utf8")) as Record<string, number>;
    } catch {
      return {};
    }
  };
  return {
    proc,
    statsFile,
    stats,
    async waitStats(pred, what, timeoutMs = 5_000) {
      return waitFor(() => (pred(stats()) ? stats() : null), { what: `stats: ${what}`, timeoutMs });
    },
    async waitVerdicts(total, since = {}) {
      const decided = (x: Record<string, number>): number =>
        VERDICTS.reduce((n, k) => n + (x[k] ?? 0) - (since[k] ?? 0), 0);
      return waitFor(() => (decided(stats()) >= total ? stats() : null), {
        what: `stats: ${total} verdicts`,
        timeoutMs: 5_000,
      });
    },
    async stop(signal = "SIGTERM") {
      if (proc.child.exitCode === null) proc.child.kill(signal);
      return proc.exited;
    },
  };
}
