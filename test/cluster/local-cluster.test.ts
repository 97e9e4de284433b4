/**
 * The local cluster, for real, brought up and torn down by `npm run cluster -- up|down`
 * (scripts/cluster.mjs): docker-compose.yml + deploy/compose.offline.yml on a Docker engine
 * (Debian's docker.io) inside a network namespace of its own (scripts/local-engine.sh:
 * --iptables=false, no default bridge, networks in 198.19.0.0/16), images built by
 * scripts/local-images.sh from Debian's repository and the host's built artifacts only. `down`
 * must leave nothing behind (the last test), and runs again afterwards, also when a test fails.
 *
 * The fleet: two replicas, icmpfwd-1 and icmpfwd-2, both answering to the name `icmpfwd`. Both
 * clients target dns:///icmpfwd:50051 (docs/cli-contract.md), so each holds a session on each
 * replica. Policies: policy-ts = even-reply for IPv4, policy-py = reply-all for IPv6 (one Hello
 * filter per family), so each replica's pinger (in that replica's network namespace) has an exact
 * outcome for its one round of 6 + 6 pings: IPv4 icmp_seq 2, 4, 6 answered, IPv6 1–6 answered,
 * decided on that replica by both clients.
 */
import { execFile, spawnSync } from "node:child_process";
import {
  accessSync,
  constants,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from "node:fs";
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
const REPLICAS = ["icmpfwd-1", "icmpfwd-2"] as const;
const CLUSTER = join(ROOT, "scripts/cluster.mjs");
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

interface ClusterState {
  project: string;
  dockerHost: string;
  netns: string;
  token: string;
}

/** What the host shows of a cluster directory: its namespace, processes, mounts, cgroups. */
function leftovers(dir: string, netns: string): Record<string, string[]> {
  const netnses = spawnSync("ip", ["netns", "list"], { encoding: "utf8" })
    .stdout.split("\n")
    .map((l) => l.split(" ")[0])
    .filter((n) => n === netns);
  const processes: string[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
      if (cmd.includes(`${dir}/`) && Number(pid) !== process.pid) processes.push(`${pid} ${cmd}`);
    } catch {
      // gone meanwhile
    }
  }
  const mounts = readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .filter((l) => l.split(" ")[1]?.startsWith(`${dir}/`));
  const cgroups = readdirSync("/sys/fs/cgroup")
    .map((c) => `/sys/fs/cgroup/${c}/${netns}`)
    .filter((p) => existsSync(p));
  return { netnses, processes, mounts, cgroups, dir: existsSync(dir) ? [dir] : [] };
}

/** The host namespace's veth interfaces (the engine's live in its own namespace). */
const hostVeths = (): string[] =>
  spawnSync("ip", ["-o", "link", "show", "type", "veth"], { encoding: "utf8" })
    .stdout.split("\n")
    .filter(Boolean)
    .map((l) => l.split(":")[1].trim());

describe.skipIf(why !== "")(
  `local cluster (npm run cluster, two replicas, offline images)${why ? ` (skipped: ${why})` : ""}`,
  () => {
    let dir = "";
    let state: ClusterState | null = null;
    let env: NodeJS.ProcessEnv = process.env;
    let failed = false;
    let vethsBefore: string[] = [];
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
    const inService = async (service: string, args: readonly string[], timeoutMs = 60_000) =>
      docker(["exec", await container(service), ...args], timeoutMs);
    const sessions = async (replica: string): Promise<Session[]> =>
      (await inService(replica, ["icmpfwd", "sessions", "--json"]))
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as Session);
    const counters = async (replica: string): Promise<Record<string, number>> =>
      (
        JSON.parse(await inService(replica, ["icmpfwd", "stats", "--json"])) as {
          counters: Record<string, number>;
        }
      ).counters;
    /** A Prometheus HTTP API call, from inside the cluster. */
    const promApi = async (path: string): Promise<unknown> => {
      const body = await inService("icmpfwd-1", [
        "node",
        "-e",
        "fetch(process.argv[1]).then((r) => r.text()).then((t) => process.stdout.write(t))",
        `http://prometheus:9090/api/v1/${path}`,
      ]);
      const r = JSON.parse(body) as { status: string; data: unknown };
      if (r.status !== "success") throw new Error(body);
      return r.data;
    };
    const promQuery = async (q: string) =>
      (
        (await promApi(`query?query=${encodeURIComponent(q)}`)) as {
          result: { metric: Record<string, string>; value: [number, string] }[];
        }
      ).result;
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
    const clusterCmd = (cmd: "up" | "down", timeoutMs: number) =>
      sh(process.execPath, [CLUSTER, cmd, "--dir", dir, "--no-build"], {
        timeoutMs,
        env: { ...process.env, ICMPFWD_CLUSTER_PROJECT: PROJECT, PINGER_ROUNDS: "1" },
      });

    const downSync = (): void => {
      if (dir === "" || !existsSync(dir)) return;
      spawnSync(process.execPath, [CLUSTER, "down", "--dir", dir], {
        stdio: "inherit",
        timeout: 300_000,
      });
    };
    // Last resort: a run killed before afterAll must not leave the engine or its namespace.
    process.on("exit", downSync);

    beforeAll(async () => {
      vethsBefore = hostVeths();
      dir = join(mkdtempSync(join(tmpdir(), "icmpfwd-cluster-")), "cluster");
      const up = await time("up", () => clusterCmd("up", 900_000));
      if (existsSync(join(dir, "state.json")))
        state = JSON.parse(readFileSync(join(dir, "state.json"), "utf8")) as ClusterState;
      if (up.code !== 0 || state === null)
        throw new Error(`npm run cluster -- up failed (${up.code}): ${up.stderr.slice(-3000)}`);
      expect(state.project).toBe(PROJECT);
      // The cluster's own token: a container compose (re)creates here must get the same one.
      env = {
        ...process.env,
        DOCKER_HOST: state.dockerHost,
        COMPOSE_HTTP_TIMEOUT: "180",
        ICMPFWD_TOKEN: state.token,
      };
      delete env.DOCKER_CONTEXT;
    });

    afterEach((ctx) => {
      if (ctx.task.result?.state === "fail") failed = true;
    });

    afterAll(async () => {
      try {
        if (failed && state !== null && existsSync(dir)) {
          // What each container said, for the failure report.
          const logs = await sh(
            "docker-compose",
            composeArgs(["logs", "--no-color", "--tail", "40"]),
            { timeoutMs: 60_000, env },
          );
          process.stderr.write(`${logs.stdout}${logs.stderr}\n`);
        }
      } finally {
        downSync();
        if (dir !== "") rmSync(join(dir, ".."), { recursive: true, force: true });
        timings.total = Math.round((Date.now() - started) / 100) / 10;
        process.stdout.write(`local cluster timings (s): ${JSON.stringify(timings)}\n`);
      }
    });

    it("both replicas turn healthy (their healthcheck is `icmpfwd health`)", async () => {
      for (const replica of REPLICAS) {
        const id = await container(replica);
        await until(`${replica} healthy`, 120_000, async () =>
          (await docker(["inspect", "-f", "{{.State.Health.Status}}", id])).trim() === "healthy"
            ? true
            : undefined,
        );
        expect(
          (await sh(DOCKER, ["exec", id, "icmpfwd", "health"], { timeoutMs: 30_000, env })).code,
        ).toBe(0);
      }
    });

    it("each replica's pinger gets exactly the policies' answers: IPv4 even-reply (policy-ts), IPv6 reply-all (policy-py)", async () => {
      for (const pinger of ["pinger-1", "pinger-2"]) {
        const id = await container(pinger);
        const code = await until(`${pinger}'s round to end`, 180_000, async () => {
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
      }
    });

    it("`icmpfwd sessions` on each replica lists both policies, each of which decided that replica's own pings", async () => {
      for (const replica of REPLICAS) {
        const ss = await sessions(replica);
        const byName = Object.fromEntries(ss.map((s) => [s.clientName, s]));
        expect(ss.map((s) => s.clientName).sort(), replica).toEqual(["policy-py", "policy-ts"]);
        expect(byName["policy-ts"], replica).toMatchObject({
          mode: "decide",
          filter: { family: "ipv4" },
          decided: COUNT,
          inFlight: 0,
        });
        expect(byName["policy-py"], replica).toMatchObject({
          mode: "decide",
          filter: { family: "ipv6" },
          decided: COUNT,
          inFlight: 0,
        });
        // Each client is its own container on the compose network (198.19.0.0/16).
        for (const s of ss) expect(s.peer).toMatch(/^198\.19\.\d+\.\d+:\d+$/);
      }
    });

    it("each replica's counters: its own pinger's requests, decided by verdict, answered by its own netstack", async () => {
      for (const replica of REPLICAS) {
        const c = await counters(replica);
        const outcomes = Object.fromEntries(
          Object.entries(c).filter(([k, v]) => k.startsWith("service.outcomes.") && v !== 0),
        );
        expect(outcomes, replica).toEqual({
          "service.outcomes.reply.verdict": COUNT + COUNT / 2,
          "service.outcomes.consume.verdict": COUNT / 2,
        });
        expect(c["icmp.v4.packetsReceived.echoRequest"], replica).toBe(COUNT);
        expect(c["icmp.v4.packetsSent.echoReply"], replica).toBe(COUNT / 2);
        expect(c["icmp.v6.packetsReceived.echoRequest"], replica).toBe(COUNT);
        expect(c["icmp.v6.packetsSent.echoReply"], replica).toBe(COUNT);
      }
    });

    it("Prometheus scrapes both replicas (requests and decisions by client per instance) and loads the five alerts", async () => {
      const requests = await until(
        "Prometheus to scrape both pingers' requests",
        90_000,
        async () => {
          const r = await promQuery(
            'sum by (instance, outcome, family) (icmpfwd_requests_total{cause="verdict"})',
          );
          const m = Object.fromEntries(
            r
              .filter((x) => x.value[1] !== "0")
              .map((x) => [
                `${x.metric.instance} ${x.metric.family} ${x.metric.outcome}`,
                Number(x.value[1]),
              ]),
          );
          return Object.values(m).reduce((a, b) => a + b, 0) === 4 * COUNT ? m : undefined;
        },
      );
      expect(requests).toEqual({
        "icmpfwd-1:9464 ipv4 reply": 3,
        "icmpfwd-1:9464 ipv4 consume": 3,
        "icmpfwd-1:9464 ipv6 reply": 6,
        "icmpfwd-2:9464 ipv4 reply": 3,
        "icmpfwd-2:9464 ipv4 consume": 3,
        "icmpfwd-2:9464 ipv6 reply": 6,
      });
      const decisions = await until("Prometheus to scrape the decisions", 60_000, async () => {
        const r = await promQuery(
          "sum by (instance, session) (icmpfwd_decision_duration_seconds_count)",
        );
        const m = Object.fromEntries(
          r.map((x) => [`${x.metric.instance} ${x.metric.session}`, Number(x.value[1])]),
        );
        return Object.values(m).reduce((a, b) => a + b, 0) === 4 * COUNT ? m : undefined;
      });
      expect(decisions).toEqual({
        "icmpfwd-1:9464 policy-ts": COUNT,
        "icmpfwd-1:9464 policy-py": COUNT,
        "icmpfwd-2:9464 policy-ts": COUNT,
        "icmpfwd-2:9464 policy-py": COUNT,
      });
      const build = await promQuery("icmpfwd_build_info");
      expect(build.map((x) => x.metric.instance).sort()).toEqual([
        "icmpfwd-1:9464",
        "icmpfwd-2:9464",
      ]);
      const rules = (await promApi("rules")) as {
        groups: { name: string; rules: { name: string; health: string; state: string }[] }[];
      };
      expect(rules.groups.map((g) => g.name)).toEqual(["icmpfwd"]);
      expect(rules.groups[0].rules.map((r) => `${r.name} ${r.health}`)).toEqual([
        "IcmpfwdNoDecisionClient ok",
        "IcmpfwdDecisionsTimingOut ok",
        "IcmpfwdFallthroughOnOverload ok",
        "IcmpfwdNetstackDropsRising ok",
        "IcmpfwdEventLoopLag ok",
      ]);
      // Both clients are connected to both replicas: no-decision-client is quiet.
      expect(rules.groups[0].rules[0].state).toBe("inactive");
    });

    it("the OTLP sink received one trace per Echo Request from both replicas, decided by the right client", async () => {
      const total = 4 * COUNT;
      const all = await until(`the spans of all ${total} requests`, 60_000, async () => {
        const s = await spans();
        const requests = s.filter((x) => x.name === "icmpfwd.echo_request");
        const decides = s.filter((x) => x.name === "icmpfwd.decide");
        return requests.length >= total && decides.length >= total ? s : undefined;
      });
      const requests = all.filter((x) => x.name === "icmpfwd.echo_request");
      const decides = all.filter((x) => x.name === "icmpfwd.decide");
      expect(requests).toHaveLength(total);
      expect(decides).toHaveLength(total);
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
      ).toEqual({ "ipv4 reply": 6, "ipv4 consume": 6, "ipv6 reply": 12 });
      expect(
        tally(
          decides,
          (x) => `${x.attributes["icmpfwd.client"]} ${x.attributes["icmpfwd.verdict"]}`,
        ),
      ).toEqual({ "policy-ts reply": 6, "policy-ts consume": 6, "policy-py reply": 12 });
      const byId = new Map(requests.map((r) => [r.spanId, r]));
      for (const d of decides) expect(byId.get(d.parentSpanId)?.traceId).toBe(d.traceId);
      expect(new Set(all.map((x) => x.service))).toEqual(new Set(["icmpfwd"]));
    });

    it("gRPC is published in the cluster's namespace (127.0.0.1:50051, :50052) and needs the token", async () => {
      if (state === null) throw new Error("no cluster state");
      const noToken = { ...process.env };
      delete noToken.ICMPFWD_TOKEN;
      const cli = (target: string, token: string | null) =>
        sh(
          "nsenter",
          [
            `--net=/var/run/netns/${state?.netns}`,
            process.execPath,
            join(ROOT, "dist/main.js"),
            "sessions",
            "--json",
            "--target",
            target,
            ...(token === null ? [] : ["--token", token]),
          ],
          { timeoutMs: 30_000, env: noToken },
        );
      for (const target of ["127.0.0.1:50051", "127.0.0.1:50052"]) {
        const ok = await cli(target, state.token);
        expect(ok.code, ok.stderr).toBe(0);
        const names = ok.stdout
          .split("\n")
          .filter((l) => l !== "")
          .map((l) => (JSON.parse(l) as Session).clientName)
          .sort();
        expect(names, target).toEqual(["policy-py", "policy-ts"]);
        const refused = await cli(target, null);
        expect(refused.code, target).not.toBe(0);
        expect(refused.stderr, target).toMatch(/UNAUTHENTICATED/);
      }
    });

    it("--scale policy-py=3: three Python sessions on each replica; each IPv6 flow is decided by one of them", async () => {
      await time("scale", () =>
        compose(
          ["up", "-d", "--no-build", "--no-deps", "--scale", "policy-py=3", "policy-py"],
          180_000,
        ),
      );
      for (const replica of REPLICAS) {
        await until(`three policy-py sessions on ${replica}`, 120_000, async () => {
          const ss = await sessions(replica);
          return ss.filter((s) => s.clientName === "policy-py").length === 3 ? ss : undefined;
        });
      }
      const replica = "icmpfwd-2";
      const before = await sessions(replica);
      const decidedBefore = new Map(before.map((s) => [s.sessionId, s.decided]));
      // Three ping flows at once (three idents), 4 requests each, from this replica's namespace.
      const out = await inService(
        replica,
        [
          "sh",
          "-c",
          "for i in 1 2 3; do ping -6 -n -c 4 -i 0.3 -W 1 fd00:1::2 >/tmp/flow$i 2>&1 & done; wait; cat /tmp/flow1 /tmp/flow2 /tmp/flow3",
        ],
        60_000,
      );
      expect([...out.matchAll(/4 packets transmitted, 4 received/g)], out).toHaveLength(3);
      const after = await sessions(replica);
      const py = after.filter((s) => s.clientName === "policy-py");
      expect(py).toHaveLength(3);
      expect(new Set(py.map((s) => s.peer.split(":")[0])).size).toBe(3);
      const deltas = py.map((s) => s.decided - (decidedBefore.get(s.sessionId) ?? 0));
      // Flow affinity: a flow's 4 requests all go to the session that took its first one.
      expect(deltas.reduce((a, b) => a + b, 0)).toBe(12);
      for (const d of deltas) expect(d % 4, JSON.stringify(deltas)).toBe(0);
      expect(after.find((s) => s.clientName === "policy-ts")?.decided).toBe(COUNT);
    });

    it("npm run cluster -- down leaves nothing behind: no namespace, engine, mounts, cgroups or veths", async () => {
      if (state === null) throw new Error("no cluster state");
      const netns = state.netns;
      expect(leftovers(dir, netns).netnses).toEqual([netns]);
      const down = await time("down", () => clusterCmd("down", 300_000));
      expect(down.code, down.stderr).toBe(0);
      expect(leftovers(dir, netns)).toEqual({
        netnses: [],
        processes: [],
        mounts: [],
        cgroups: [],
        dir: [],
      });
      expect(hostVeths()).toEqual(vethsBefore);
      // A second down finds nothing to do.
      const again = await clusterCmd("down", 60_000);
      expect(again.code).toBe(0);
      expect(again.stderr).toContain("not running");
    });
  },
);
