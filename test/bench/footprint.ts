/**
 * (h) Footprint of the real daemon: `node <semi-space flag> dist/main.js serve` on its defaults,
 * each row in a private namespace of its own (the daemon creates its TUN there and listens on
 * 127.0.0.1:50051 inside it), its RSS read from /proc:
 *  - at rest, 3 s after "serving", next to a bare Node process started the same way;
 *  - with 1,000 idle policy sessions (each its own connection, Hello in decide mode, unique
 *    names) and with 10,000 idle TCP connections (--max-connections 10000), held by a child
 *    process (idle-load.ts) in the namespace: RSS when all are up, and 5 s later (the daemon's
 *    quiet-time collection), against the same daemon's RSS at rest;
 *  - deciding a bounded ping flood with 4 policy clients (peak RSS, decisions/s).
 * The semi-space flag is the one `npm start` passes (package.json), BENCH_FOOTPRINT_SEMI to
 * change it. Bounded: 60 s to start, 120 s for the idle load.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  type BenchMeasurement,
  type BenchModule,
  BenchNetns,
  type FloodOptions,
  flood,
} from "./flood.js";

export interface FootprintResult {
  name: string;
  /** What the row is measured against (a bare Node process, the daemon at rest). */
  baseline: string;
  baselineMB: number;
  /** RSS with the load, when it is all up (the at-rest row: 3 s after serving). */
  measuredMB: number;
  /** RSS 5 s later (null for the at-rest rows). */
  settledMB: number | null;
  /** The target's bound, in MiB: absolute (at rest) or growth over the baseline. */
  limitMB: number;
  growth: boolean;
  /** The flood row: Echo Replies per second, every one decided by a client. */
  repliesPerSecond?: number;
}

/** The last run's rows, for run.ts's footprint table and targets. */
export const footprintResults: FootprintResult[] = [];

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function semiSpaceFlag(): string {
  const env = process.env.BENCH_FOOTPRINT_SEMI;
  if (env !== undefined && env !== "") return `--max-semi-space-size=${env}`;
  const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")) as {
    scripts: Record<string, string>;
  };
  return /--max-semi-space-size=\d+/.exec(pkg.scripts.start)?.[0] ?? "--max-semi-space-size=64";
}

function rssMB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (m === null) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) / 1024;
}

/** Waits until `child` prints a line matching `re`, at most `ms`. */
function waitForLine(child: ChildProcess, re: RegExp, ms: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error(`${what}: not ready in ${ms} ms`)), ms);
    const onData = (d: Buffer): void => {
      seen += d.toString();
      if (re.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}): ${seen.slice(-500)}`));
    });
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  await Promise.race([exited, sleep(10_000)]);
  if (child.exitCode === null) child.kill("SIGKILL");
}

/** The daemon on its defaults (plus `args`) in `ns`, once it logged "serving". */
async function startDaemon(ns: BenchNetns, args: string[]): Promise<ChildProcess> {
  const child = spawn(
    "ip",
    ["netns", "exec", ns.name, "node", semiSpaceFlag(), `${ROOT}dist/main.js`, "serve", ...args],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  child.stdout?.resume();
  await waitForLine(child, /"msg":"serving"/, 60_000, "icmpfwd serve");
  return child;
}

/** The pid of the node process `ip netns exec` became (exec keeps it). */
function pidOf(child: ChildProcess): number {
  if (child.pid === undefined) throw new Error("no pid");
  return child.pid;
}

async function inNamespace<T>(purpose: string, body: (ns: BenchNetns) => Promise<T>): Promise<T> {
  const ns = await BenchNetns.create(purpose);
  try {
    return await body(ns);
  } finally {
    await ns.destroy();
  }
}

async function atRest(): Promise<FootprintResult> {
  const bare = await inNamespace("fp-bare", async (ns) => {
    const child = spawn(
      "ip",
      [
        "netns",
        "exec",
        ns.name,
        "node",
        semiSpaceFlag(),
        "-e",
        "console.log('up'); setInterval(() => {}, 1e9)",
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    try {
      await waitForLine(child, /up/, 30_000, "bare node");
      await sleep(3000);
      return rssMB(pidOf(child));
    } finally {
      await stop(child);
    }
  });
  const daemon = await inNamespace("fp-rest", async (ns) => {
    const child = await startDaemon(ns, []);
    try {
      await sleep(3000);
      return rssMB(pidOf(child));
    } finally {
      await stop(child);
    }
  });
  return {
    name: `icmpfwd serve at rest, defaults (${semiSpaceFlag()})`,
    baseline: "bare Node process",
    baselineMB: bare,
    measuredMB: daemon,
    settledMB: null,
    limitMB: 70,
    growth: false,
  };
}

async function idleLoad(
  kind: "sessions" | "connections",
  n: number,
  limitMB: number,
): Promise<FootprintResult> {
  return inNamespace(`fp-${kind}`, async (ns) => {
    const daemon = await startDaemon(
      ns,
      kind === "connections" ? ["--max-connections", String(n)] : [],
    );
    let load: ChildProcess | null = null;
    try {
      await sleep(3000);
      const rest = rssMB(pidOf(daemon));
      load = spawn(
        "ip",
        [
          "netns",
          "exec",
          ns.name,
          "node",
          "--import",
          "tsx",
          `${ROOT}test/bench/idle-load.ts`,
          kind,
          String(n),
          "127.0.0.1:50051",
        ],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      await waitForLine(load, /ready/, 130_000, `idle ${kind}`);
      await sleep(1000);
      const measured = rssMB(pidOf(daemon));
      await sleep(5000);
      const settled = rssMB(pidOf(daemon));
      return {
        name: `icmpfwd serve with ${n.toLocaleString("en")} idle ${kind === "sessions" ? "policy sessions" : "TCP connections"}`,
        baseline: "the same daemon at rest",
        baselineMB: rest,
        measuredMB: measured,
        settledMB: settled,
        limitMB,
        growth: true,
      };
    } finally {
      if (load !== null) await stop(load);
      await stop(daemon);
    }
  });
}

/**
 * The daemon deciding a flood: 4 policy clients (clients/ts's `reply-all`, each a process) and
 * `flooders` × `ping -f` at the netstack's address, all in the namespace; the daemon's peak RSS
 * (VmHWM, reset when the flood starts) against its RSS at rest.
 */
async function underFlood(o: FloodOptions): Promise<FootprintResult> {
  return inNamespace("fp-flood", async (ns) => {
    const daemon = await startDaemon(ns, []);
    const clients: ChildProcess[] = [];
    try {
      await sleep(3000);
      const rest = rssMB(pidOf(daemon));
      for (let i = 0; i < 4; i++) {
        const c = spawn(
          "ip",
          [
            "netns",
            "exec",
            ns.name,
            "node",
            `${ROOT}clients/ts/dist/clients/ts/src/cli.js`,
            "--name",
            `flood-${i}`,
            "reply-all",
          ],
          { stdio: ["ignore", "ignore", "pipe"] },
        );
        c.stderr?.resume();
        clients.push(c);
      }
      // Sessions up: the daemon's GetStats would say; the clients log nothing, so wait.
      await sleep(3000);
      writeFileSync(`/proc/${pidOf(daemon)}/clear_refs`, "5");
      const r = await flood(ns, "198.18.0.2", o);
      const peak = peakMB(pidOf(daemon));
      return {
        name: `icmpfwd serve deciding a ${o.flooders} × ping -f flood (4 policy clients, batch 128): peak`,
        baseline: "the same daemon at rest",
        baselineMB: rest,
        measuredMB: peak,
        settledMB: null,
        limitMB: 200,
        growth: false,
        repliesPerSecond: r.repliesPerSecond,
      };
    } finally {
      for (const c of clients) await stop(c);
      await stop(daemon);
    }
  });
}

function peakMB(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (m === null) throw new Error(`no VmHWM for ${pid}`);
  return Number(m[1]) / 1024;
}

/** The rows by name, in the order they run; BENCH_FOOTPRINT_ONLY=sessions,… picks some. */
const ROWS: Record<string, (o: FloodOptions) => Promise<FootprintResult>> = {
  rest: () => atRest(),
  flood: (o) => underFlood(o),
  sessions: () => idleLoad("sessions", 1000, 30),
  connections: () => idleLoad("connections", 10_000, 100),
};

export async function runFootprintBench(o: FloodOptions): Promise<FootprintResult[]> {
  const only = process.env.BENCH_FOOTPRINT_ONLY?.split(",").map((s) => s.trim());
  const unknown = only?.filter((n) => !(n in ROWS)) ?? [];
  if (unknown.length > 0)
    throw new Error(
      `BENCH_FOOTPRINT_ONLY: unknown row ${unknown.join(", ")} (known: ${Object.keys(ROWS).join(", ")})`,
    );
  const out: FootprintResult[] = [];
  for (const [name, row] of Object.entries(ROWS))
    if (only === undefined || only.includes(name)) out.push(await row(o));
  return out;
}

export const footprintBench: BenchModule = {
  name: "footprint",
  async run(o: FloodOptions): Promise<BenchMeasurement[]> {
    const rows = await runFootprintBench(o);
    footprintResults.push(...rows);
    return rows.map((r) => ({
      mechanism: `footprint: ${r.name}`,
      transmitted: 0,
      received: 0,
      rttAvgMs: null,
      wallSeconds: 0,
      repliesPerSecond: r.repliesPerSecond ?? 0,
      cpuSeconds: null,
      notes: `RSS ${r.baselineMB.toFixed(1)} (${r.baseline}) → ${r.measuredMB.toFixed(1)} MiB${r.settledMB === null ? "" : `, ${r.settledMB.toFixed(1)} MiB 5 s later`}`,
    }));
  },
};
