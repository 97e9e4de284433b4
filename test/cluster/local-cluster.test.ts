/**
 * The local cluster, for real: docker-compose.yml + deploy/compose.offline.yml on a Docker
 * engine (Debian's docker.io) that runs inside a network namespace this test creates
 * (scripts/local-engine.sh: --iptables=false, no default bridge, networks in 198.19.0.0/16),
 * with images built by scripts/local-images.sh from Debian's repository and the host's built
 * artifacts only. The engine, its containers, mounts and namespace are removed afterwards, also
 * when a test fails.
 *
 * Policies: policy-ts = even-reply for IPv4, policy-py = reply-all for IPv6 (one Hello filter per
 * family), so the pinger's one round of 6 + 6 pings has an exact outcome: IPv4 icmp_seq 2, 4, 6
 * answered, IPv6 1–6 answered.
 */
import { execFile, spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { aptInstall, PREREQUISITES } from "../../scripts/prerequisites.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const inCI = process.env.CI === "true" || process.env.CI === "1";
const DOCKER = existsSync("/usr/bin/docker") ? "/usr/bin/docker" : "docker";
const PROJECT = `icmpfwd-cluster-${process.pid}`;
const COUNT = 6;
// Debian packages the test needs (scripts/prerequisites.mjs, the list `npm test` installs).
const PACKAGES = PREREQUISITES.filter((p) => /\bcluster\b/.test(p.tests)).map((p) => p.pkg);
const TOOLS = ["dockerd", "docker-compose", "debootstrap", "nsenter", "ip"];

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function sh(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs: number; env?: NodeJS.ProcessEnv },
): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      {
        cwd: ROOT,
        env: opts.env ?? process.env,
        timeout: opts.timeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: 64 << 20,
      },
      (err, stdout, stderr) => {
        const code =
          err === null ? 0 : typeof err.code === "number" ? err.code : (child.exitCode ?? null);
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

async function must(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs: number; env?: NodeJS.ProcessEnv },
): Promise<string> {
  const r = await sh(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(
      `${cmd} ${args.join(" ")} failed (${r.code ?? "timeout"}): ${(r.stderr || r.stdout).trim().slice(-3000)}`,
    );
  }
  return r.stdout;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a value that is not undefined; bounded by `timeoutMs`. */
async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>) {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? `: ${last.message}` : ""}`,
      );
    }
    await sleep(1000);
  }
}

const have = (tool: string): boolean =>
  spawnSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" }).status === 0;

/** Root and /dev/net/tun; the Debian packages are installed here when missing (as .ci/run does). */
function prerequisites(): string {
  if (process.getuid?.() !== 0) return "needs root";
  try {
    accessSync("/dev/net/tun", constants.R_OK | constants.W_OK);
  } catch {
    return "needs /dev/net/tun";
  }
  if (!existsSync(join(ROOT, "dist/main.js"))) return "needs npm run build";
  if (TOOLS.some((t) => !have(t)) && have("apt-get")) aptInstall(PACKAGES);
  const missing = TOOLS.filter((t) => !have(t));
  if (missing.length > 0)
    return `needs ${missing.join(", ")} (apt-get install ${PACKAGES.join(" ")})`;
  return "";
}

const why = prerequisites();
if (why !== "" && inCI) throw new Error(`local cluster: missing prerequisite in CI: ${why}`);

interface Session {
  sessionId: string;
  clientName: string;
  mode: string;
  filter: { family: string };
  inFlight: number;
  decided: number;
  peer: string;
}
interface Span {
  service: string;
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  attributes: Record<string, string | number | boolean>;
}

/** Echo Replies ping printed (their icmp_seq) and its summary counts, for one destination. */
function pingOf(log: string, destination: string) {
  const seqs = [...log.matchAll(/^64 bytes from (\S+?):? icmp_seq=(\d+) ttl=64/gm)]
    .filter((m) => m[1] === destination)
    .map((m) => Number(m[2]));
  const summary = new RegExp(
    `--- ${destination.replace(/[.:]/g, "\\$&")} ping statistics ---\\n(\\d+) packets transmitted, (\\d+) received`,
  ).exec(log);
  return {
    seqs,
    transmitted: summary ? Number(summary[1]) : -1,
    received: summary ? Number(summary[2]) : -1,
  };
}

describe.skipIf(why !== "")(
  `local cluster (docker-compose, offline images)${why ? ` (skipped: ${why})` : ""}`,
  () => {
    let dir = "";
    let engine = "";
    let env: NodeJS.ProcessEnv = process.env;
    let failed = false;
    const timings: Record<string, number> = {};
    const started = Date.now();

    const docker = (args: readonly string[], timeoutMs = 60_000) =>
      must(DOCKER, args, { timeoutMs, env });
    /** docker-compose's arguments for this project and both files, then `args`. */
    const composeArgs = (args: readonly string[]) => [
      "-p",
      PROJECT,
      "-f",
      "docker-compose.yml",
      "-f",
      "deploy/compose.offline.yml",
      ...args,
    ];
    const compose = (args: readonly string[], timeoutMs = 120_000) =>
      must("docker-compose", composeArgs(args), { timeoutMs, env });
    /** The one container of a service (its id). */
    const container = async (service: string): Promise<string> => {
      const ids = (await compose(["ps", "-q", service])).trim().split("\n").filter(Boolean);
      if (ids.length !== 1) throw new Error(`${service}: ${ids.length} containers`);
      return ids[0];
    };
    const inService = async (args: readonly string[], timeoutMs = 60_000) =>
      docker(["exec", await container("icmpfwd"), ...args], timeoutMs);
    const sessions = async (): Promise<Session[]> =>
      (await inService(["icmpfwd", "sessions", "--json"]))
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as Session);
    const counters = async (): Promise<Record<string, number>> =>
      (
        JSON.parse(await inService(["icmpfwd", "stats", "--json"])) as {
          counters: Record<string, number>;
        }
      ).counters;
    /** A PromQL instant query against Prometheus' own HTTP API, from inside the cluster. */
    const promQuery = async (q: string) => {
      const url = `http://prometheus:9090/api/v1/query?query=${encodeURIComponent(q)}`;
      const body = await inService([
        "node",
        "-e",
        "fetch(process.argv[1]).then((r) => r.text()).then((t) => process.stdout.write(t))",
        url,
      ]);
      const r = JSON.parse(body) as {
        status: string;
        data: { result: { metric: Record<string, string>; value: [number, string] }[] };
      };
      if (r.status !== "success") throw new Error(body);
      return r.data.result;
    };
    const spans = async (): Promise<Span[]> =>
      (await docker(["logs", await container("otlp-sink")]))
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Span);
    const time = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      const t0 = Date.now();
      try {
        return await fn();
      } finally {
        timings[what] = Math.round((Date.now() - t0) / 100) / 10;
      }
    };

    const stopEngine = (): void => {
      if (engine === "") return;
      spawnSync(join(ROOT, "scripts/local-engine.sh"), ["stop", engine], {
        stdio: "inherit",
        timeout: 180_000,
      });
      engine = "";
    };
    // Last resort: a run killed before afterAll must not leave the engine or its namespace.
    process.on("exit", stopEngine);

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "icmpfwd-cluster-"));
      engine = join(dir, "engine");
      const out = await time("engine", () =>
        must(join(ROOT, "scripts/local-engine.sh"), ["start", engine], { timeoutMs: 120_000 }),
      );
      const host = /^DOCKER_HOST=(\S+)$/m.exec(out)?.[1];
      if (host === undefined) throw new Error(`local-engine.sh printed no DOCKER_HOST: ${out}`);
      env = { ...process.env, DOCKER_HOST: host, PINGER_ROUNDS: "1", COMPOSE_HTTP_TIMEOUT: "180" };
      delete env.DOCKER_CONTEXT;
      await time("images", () =>
        must(join(ROOT, "scripts/local-images.sh"), [], { timeoutMs: 720_000, env }),
      );
      await time("up", () => compose(["up", "-d", "--no-build"], 300_000));
    });

    afterEach((ctx) => {
      if (ctx.task.result?.state === "fail") failed = true;
    });

    afterAll(async () => {
      try {
        if (engine !== "" && failed) {
          // What each container said, for the failure report.
          const logs = await sh(
            "docker-compose",
            composeArgs(["logs", "--no-color", "--tail", "40"]),
            { timeoutMs: 60_000, env },
          );
          process.stderr.write(`${logs.stdout}${logs.stderr}\n`);
        }
        if (engine !== "") {
          await time("down", () =>
            sh("docker-compose", composeArgs(["down", "-v", "-t", "5"]), {
              timeoutMs: 120_000,
              env,
            }),
          );
        }
      } finally {
        const t0 = Date.now();
        stopEngine();
        timings.engineStop = Math.round((Date.now() - t0) / 100) / 10;
        if (dir !== "") rmSync(dir, { recursive: true, force: true });
        timings.total = Math.round((Date.now() - started) / 100) / 10;
        process.stdout.write(`local cluster timings (s): ${JSON.stringify(timings)}\n`);
      }
    });

    it("icmpfwd turns healthy (its healthcheck is `icmpfwd health`)", async () => {
      const id = await container("icmpfwd");
      await until("icmpfwd healthy", 120_000, async () =>
        (await docker(["inspect", "-f", "{{.State.Health.Status}}", id])).trim() === "healthy"
          ? true
          : undefined,
      );
      expect(
        (await sh(DOCKER, ["exec", id, "icmpfwd", "health"], { timeoutMs: 30_000, env })).code,
      ).toBe(0);
    });

    it("the pinger's answers are exactly the policies': IPv4 even-reply (policy-ts), IPv6 reply-all (policy-py)", async () => {
      const id = await container("pinger");
      const code = await until("the pinger's round to end", 180_000, async () => {
        const s = (await docker(["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id]))
          .trim()
          .split(" ");
        return s[0] === "exited" ? Number(s[1]) : undefined;
      });
      const log = await docker(["logs", id]);
      expect(code, log).toBe(0);
      expect(log).toContain("pinger: 2 decide sessions");
      expect(pingOf(log, "198.18.0.2"), log).toEqual({
        seqs: [2, 4, 6],
        transmitted: COUNT,
        received: 3,
      });
      expect(pingOf(log, "fd00:1::2"), log).toEqual({
        seqs: [1, 2, 3, 4, 5, 6],
        transmitted: COUNT,
        received: COUNT,
      });
    });

    it("GetStats / ListSessions: both clients connected and decided the pinger's requests", async () => {
      const ss = await sessions();
      const byName = Object.fromEntries(ss.map((s) => [s.clientName, s]));
      expect(ss.map((s) => s.clientName).sort()).toEqual(["policy-py", "policy-ts"]);
      expect(byName["policy-ts"]).toMatchObject({
        mode: "decide",
        filter: { family: "ipv4" },
        decided: COUNT,
        inFlight: 0,
      });
      expect(byName["policy-py"]).toMatchObject({
        mode: "decide",
        filter: { family: "ipv6" },
        decided: COUNT,
        inFlight: 0,
      });
      // Each client is its own container on the compose network (198.19.0.0/16).
      for (const s of ss) expect(s.peer).toMatch(/^198\.19\.\d+\.\d+:\d+$/);
      const c = await counters();
      const outcomes = Object.fromEntries(
        Object.entries(c).filter(([k, v]) => k.startsWith("service.outcomes.") && v !== 0),
      );
      expect(outcomes).toEqual({
        "service.outcomes.reply.verdict": COUNT + COUNT / 2,
        "service.outcomes.consume.verdict": COUNT / 2,
      });
      // The netstack received every Echo Request and sent the Echo Replies the verdicts asked for.
      expect(c["icmp.v4.packetsReceived.echoRequest"]).toBe(COUNT);
      expect(c["icmp.v4.packetsSent.echoReply"]).toBe(COUNT / 2);
      expect(c["icmp.v6.packetsReceived.echoRequest"]).toBe(COUNT);
      expect(c["icmp.v6.packetsSent.echoReply"]).toBe(COUNT);
    });

    it("Prometheus' HTTP API has icmpfwd_requests_total and the decisions by client", async () => {
      const requests = await until(
        "Prometheus to scrape the pinger's requests",
        90_000,
        async () => {
          const r = await promQuery(
            'sum by (outcome, family) (icmpfwd_requests_total{cause="verdict"})',
          );
          const m = Object.fromEntries(
            r
              .filter((x) => x.value[1] !== "0")
              .map((x) => [`${x.metric.family} ${x.metric.outcome}`, Number(x.value[1])]),
          );
          return Object.values(m).reduce((a, b) => a + b, 0) === 2 * COUNT ? m : undefined;
        },
      );
      expect(requests).toEqual({ "ipv4 reply": 3, "ipv4 consume": 3, "ipv6 reply": 6 });
      const raw = await promQuery("icmpfwd_requests_total");
      expect(raw.length).toBeGreaterThan(0);
      expect(raw[0].metric).toMatchObject({ job: "icmpfwd", instance: "icmpfwd:9464" });
      const decisions = await until("Prometheus to scrape the decisions", 60_000, async () => {
        const r = await promQuery(
          "sum by (session, verdict) (icmpfwd_decision_duration_seconds_count)",
        );
        const m = Object.fromEntries(
          r.map((x) => [`${x.metric.session} ${x.metric.verdict}`, Number(x.value[1])]),
        );
        return Object.values(m).reduce((a, b) => a + b, 0) === 2 * COUNT ? m : undefined;
      });
      expect(decisions).toEqual({
        "policy-ts reply": 3,
        "policy-ts consume": 3,
        "policy-py reply": 6,
      });
    });

    it("the OTLP sink received one trace per Echo Request, decided by the right client", async () => {
      const all = await until("the spans of all 12 requests", 60_000, async () => {
        const s = await spans();
        const requests = s.filter((x) => x.name === "icmpfwd.echo_request");
        const decides = s.filter((x) => x.name === "icmpfwd.decide");
        return requests.length >= 2 * COUNT && decides.length >= 2 * COUNT ? s : undefined;
      });
      const requests = all.filter((x) => x.name === "icmpfwd.echo_request");
      const decides = all.filter((x) => x.name === "icmpfwd.decide");
      expect(requests).toHaveLength(2 * COUNT);
      expect(decides).toHaveLength(2 * COUNT);
      const tally = (xs: Span[], f: (x: Span) => string) => {
        const t: Record<string, number> = {};
        for (const x of xs) t[f(x)] = (t[f(x)] ?? 0) + 1;
        return t;
      };
      expect(
        tally(
          requests,
          (x) => `${x.attributes["network.type"]} ${x.attributes["icmpfwd.verdict"]}`,
        ),
      ).toEqual({
        "ipv4 reply": 3,
        "ipv4 consume": 3,
        "ipv6 reply": 6,
      });
      expect(
        tally(
          decides,
          (x) => `${x.attributes["icmpfwd.client"]} ${x.attributes["icmpfwd.verdict"]}`,
        ),
      ).toEqual({
        "policy-ts reply": 3,
        "policy-ts consume": 3,
        "policy-py reply": 6,
      });
      // Each decide span is the child of its request's span.
      const byId = new Map(requests.map((r) => [r.spanId, r]));
      for (const d of decides) expect(byId.get(d.parentSpanId)?.traceId).toBe(d.traceId);
      expect(new Set(all.map((x) => x.service))).toEqual(new Set(["icmpfwd"]));
    });

    it("--scale policy-py=3: three Python sessions; each IPv6 flow is decided by one of them", async () => {
      await time("scale", () =>
        compose(
          ["up", "-d", "--no-build", "--no-deps", "--scale", "policy-py=3", "policy-py"],
          180_000,
        ),
      );
      const before = await until("three policy-py sessions", 120_000, async () => {
        const ss = await sessions();
        return ss.filter((s) => s.clientName === "policy-py").length === 3 ? ss : undefined;
      });
      const decidedBefore = new Map(before.map((s) => [s.sessionId, s.decided]));
      // Three ping flows at once (three idents), 4 requests each, from the service's namespace.
      const out = await inService(
        [
          "sh",
          "-c",
          "for i in 1 2 3; do ping -6 -n -c 4 -i 0.3 -W 1 fd00:1::2 >/tmp/flow$i 2>&1 & done; wait; cat /tmp/flow1 /tmp/flow2 /tmp/flow3",
        ],
        60_000,
      );
      expect([...out.matchAll(/4 packets transmitted, 4 received/g)], out).toHaveLength(3);
      const after = await sessions();
      const py = after.filter((s) => s.clientName === "policy-py");
      expect(py).toHaveLength(3);
      expect(new Set(py.map((s) => s.peer.split(":")[0])).size).toBe(3);
      const deltas = py.map((s) => s.decided - (decidedBefore.get(s.sessionId) ?? 0));
      // Flow affinity: a flow's 4 requests all go to the session that took its first one.
      expect(deltas.reduce((a, b) => a + b, 0)).toBe(12);
      for (const d of deltas) expect(d % 4, JSON.stringify(deltas)).toBe(0);
      const ts = after.find((s) => s.clientName === "policy-ts");
      expect(ts?.decided).toBe(COUNT);
    });
  },
);
