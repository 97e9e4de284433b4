/**
 * docs/cli-contract.md, row by row, against all three policy CLIs (TypeScript, Python, Go): the
 * same flags, environment, exit codes, stdout summary and stderr log line. The services are
 * in-process EchoServices on loopback grpc-js sockets (real sockets, no packets needed: Echo
 * Requests are injected into the service's in-memory link), one or two per row.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { exec, inCI, tempDir, waitFor } from "../helpers/netns.js";
import { v4Echo } from "../helpers/packets.js";
import { type Harness, startHarness } from "../integration/service/harness.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const GO_DIR = join(ROOT, "clients/go");
const PYTHON = "/usr/bin/python3";
/** A cold Go build cache compiles grpc and protobuf first. */
const BUILD_TIMEOUT_MS = 240_000;

interface Cli {
  /** The command and the arguments before the CLI's own. */
  command: () => [string, string[]];
  env: NodeJS.ProcessEnv;
}

let goBinary = "";

/** The per-language command table: where each CLI is (one line each). */
const CLIS: Record<string, Cli> = {
  ts: { command: () => [process.execPath, [join(ROOT, "clients/ts/dist/cli.js")]], env: {} },
  python: {
    command: () => [PYTHON, ["-m", "icmpfwd_client"]],
    env: { PYTHONPATH: join(ROOT, "clients/python"), PYTHONUNBUFFERED: "1" },
  },
  go: { command: () => [goBinary, []], env: {} },
};

/** Every flag of the contract's table: `--help` lists each. */
const FLAGS = [
  "--target",
  "--token",
  "--tls-ca",
  "--tls-cert",
  "--tls-key",
  "--tls-server-name",
  "--name",
  "--family",
  "--max-in-flight",
  "--n",
  "--rate",
  "--burst",
  "--delay-ms",
  "--measure",
  "--resolve-interval-ms",
];

const LEVELS = ["debug", "info", "warn", "error"];
const TOKEN = "cli-contract-token-0123456789";

interface Running {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
}

let running: Running[] = [];
let services: Harness[] = [];

function start(cli: Cli, args: string[], env: NodeJS.ProcessEnv = {}): Running {
  const [cmd, pre] = cli.command();
  const base = { ...process.env };
  delete base.ICMPFWD_TARGET;
  delete base.ICMPFWD_TOKEN;
  const child = spawn(cmd, [...pre, ...args], {
    env: { ...base, ...cli.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout?.on("data", (b: Buffer) => {
    out += b.toString();
  });
  child.stderr?.on("data", (b: Buffer) => {
    err += b.toString();
  });
  const exited = new Promise<number | null>((resolve) => {
    child.on("error", (e) => {
      err += String(e);
      resolve(null);
    });
    child.on("close", (code) => resolve(code));
  });
  const r = { child, stdout: () => out, stderr: () => err, exited };
  running.push(r);
  return r;
}

/** Runs to the end (bounded): the exit code and both streams. */
async function runToEnd(
  cli: Cli,
  args: string[],
): Promise<{ code: number | null; out: string; err: string }> {
  const r = start(cli, args);
  const timer = setTimeout(() => r.child.kill("SIGKILL"), 15_000);
  const code = await r.exited;
  clearTimeout(timer);
  return { code, out: r.stdout(), err: r.stderr() };
}

async function service(o: Parameters<typeof startHarness>[0] = {}): Promise<Harness> {
  const h = await startHarness({ deadlineMs: 2000, ...o });
  services.push(h);
  return h;
}

const sessionCount = (h: Harness): number => h.service.gauges()["service.sessions"] ?? -1;

/** Waits until the service has `n` sessions (the client said Hello and got its Welcome). */
async function sessions(h: Harness, n: number, r: Running): Promise<void> {
  await waitFor(() => sessionCount(h) === n || r.child.exitCode !== null, {
    what: `${n} session(s) on ${h.service.address}`,
    timeoutMs: 15_000,
  });
  if (r.child.exitCode !== null) throw new Error(`the CLI exited: ${r.stderr()}`);
}

/** SIGTERM: exit 0 and the summary line on stdout. */
async function stop(r: Running): Promise<string> {
  r.child.kill("SIGTERM");
  const code = await r.exited;
  expect(code, r.stderr()).toBe(0);
  return r.stdout();
}

/** The one stderr line of a usage error. */
function oneLine(err: string): string {
  const lines = err.trimEnd().split("\n");
  expect(lines, err).toHaveLength(1);
  return lines[0] ?? "";
}

let certs = "";

interface Row {
  rule: string;
  run: (cli: Cli) => Promise<void>;
}

const ROWS: Row[] = [
  {
    rule: "an unknown policy is a usage error: exit 2, one line naming it",
    run: async (cli) => {
      const r = await runToEnd(cli, ["reply-none"]);
      expect(r.code).toBe(2);
      expect(oneLine(r.err)).toContain("reply-none");
    },
  },
  {
    rule: "an unknown flag is a usage error: exit 2, one line naming it",
    run: async (cli) => {
      const r = await runToEnd(cli, ["reply-all", "--bogus-flag", "1"]);
      expect(r.code).toBe(2);
      expect(oneLine(r.err)).toContain("--bogus-flag");
    },
  },
  {
    rule: "a bad value is a usage error: exit 2, one line naming the flag",
    run: async (cli) => {
      for (const args of [
        ["every-nth", "--n", "0"],
        ["every-nth", "--n=x"],
      ]) {
        const r = await runToEnd(cli, args);
        expect(r.code, args.join(" ")).toBe(2);
        expect(oneLine(r.err)).toMatch(/--n\b/);
      }
      const r = await runToEnd(cli, ["reply-all", "--family", "ipv5"]);
      expect(r.code).toBe(2);
      expect(oneLine(r.err)).toContain("--family");
    },
  },
  {
    rule: "--help prints the usage and every flag, exit 0",
    run: async (cli) => {
      const r = await runToEnd(cli, ["--help"]);
      expect(r.code).toBe(0);
      for (const f of FLAGS) expect(r.out, f).toMatch(new RegExp(`${f}\\b`));
    },
  },
  {
    rule: "every-nth --n 3 replies to every third request and consumes the rest",
    run: async (cli) => {
      const h = await service();
      const c = start(cli, ["every-nth", "--n", "3", "--target", h.service.address]);
      await sessions(h, 1, c);
      for (let s = 1; s <= 6; s++) h.link.inject(v4Echo({ sequence: s }));
      await waitFor(
        () =>
          h.counter("service.outcomes.reply.verdict") +
            h.counter("service.outcomes.consume.verdict") ===
          6,
        { what: "6 verdicts" },
      );
      expect(h.counter("service.outcomes.reply.verdict")).toBe(2);
      expect(h.counter("service.outcomes.consume.verdict")).toBe(4);
      expect(await stop(c)).toMatch(/^summary policy=every-nth decided=6 reply=2 consume=4 /m);
    },
  },
  {
    rule: "ICMPFWD_TARGET and ICMPFWD_TOKEN are honoured",
    run: async (cli) => {
      const h = await service({ security: { token: TOKEN } });
      const c = start(cli, ["reply-all"], {
        ICMPFWD_TARGET: h.service.address,
        ICMPFWD_TOKEN: TOKEN,
      });
      await sessions(h, 1, c);
      expect(await stop(c)).toMatch(/^summary policy=reply-all .* sessions=1$/m);
    },
  },
  {
    rule: "refused credentials exit 2",
    run: async (cli) => {
      const h = await service({ security: { token: TOKEN } });
      const r = await runToEnd(cli, ["reply-all", "--target", h.service.address, "--token", "no"]);
      expect(r.code, r.err).toBe(2);
      expect(r.err).toContain("UNAUTHENTICATED");
    },
  },
  {
    rule: "a rejected Hello exits 1",
    run: async (cli) => {
      const h = await service();
      // client_name is at most 256 bytes: INVALID_ARGUMENT.
      const name = "x".repeat(300);
      const r = await runToEnd(cli, ["reply-all", "--target", h.service.address, "--name", name]);
      expect(r.code, r.err).toBe(1);
      expect(r.err).toContain("INVALID_ARGUMENT");
    },
  },
  {
    rule: "SIGTERM drains, exits 0 and prints the summary line",
    run: async (cli) => {
      const h = await service();
      const c = start(cli, ["drop-all", `--target=${h.service.address}`]);
      await sessions(h, 1, c);
      h.link.inject(v4Echo({ sequence: 1 }));
      await waitFor(() => h.counter("service.outcomes.consume.verdict") === 1, {
        what: "a verdict",
      });
      const out = await stop(c);
      expect(out.trimEnd().split("\n")).toEqual([
        "summary policy=drop-all decided=1 reply=0 consume=1 fallthrough=0 errors=0 observed=0 sessions=1",
      ]);
      await waitFor(() => sessionCount(h) === 0, { what: "the session gone" });
    },
  },
  {
    rule: "stderr is JSON lines with time, a level word and msg; session and target on session lines",
    run: async (cli) => {
      const h = await service();
      const c = start(cli, ["reply-all", "-v", "--target", h.service.address]);
      await sessions(h, 1, c);
      h.link.inject(v4Echo({ sequence: 1 }));
      await waitFor(() => h.counter("service.outcomes.reply.verdict") === 1, { what: "a verdict" });
      await stop(c);
      const lines = c
        .stderr()
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.length).toBeGreaterThan(0);
      for (const l of lines) {
        expect(String(l.time)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        expect(LEVELS).toContain(l.level);
        expect(typeof l.msg).toBe("string");
      }
      const welcome = lines.find((l) => typeof l.session === "string" && l.level === "info");
      expect(welcome, c.stderr()).toBeDefined();
      expect(welcome?.target).toBe(h.service.address);
      // -v: the verdict line (its reply action in the message or a field) is about the session too.
      const verdict = lines.find(
        (l) => l.level === "debug" && (String(l.msg).includes("reply") || l.action === "reply"),
      );
      expect(verdict?.session, c.stderr()).toBe(welcome?.session);
    },
  },
  {
    rule: "--target a,b with two services opens a session on each",
    run: async (cli) => {
      const a = await service();
      const b = await service();
      const c = start(cli, ["even-reply", "--target", `${a.service.address},${b.service.address}`]);
      await sessions(a, 1, c);
      await sessions(b, 1, c);
      a.link.inject(v4Echo({ sequence: 2 }));
      b.link.inject(v4Echo({ sequence: 2 }));
      await waitFor(
        () =>
          a.counter("service.outcomes.reply.verdict") === 1 &&
          b.counter("service.outcomes.reply.verdict") === 1,
        { what: "a verdict from each service" },
      );
      expect(await stop(c)).toMatch(/^summary policy=even-reply decided=2 reply=2 .* sessions=2$/m);
    },
  },
  {
    rule: "--tls-ca and --tls-server-name reach a TLS service",
    run: async (cli) => {
      const pem = (f: string) => readFileSync(join(certs, f));
      const h = await service({
        security: { tls: { cert: pem("server.pem"), key: pem("server.key") } },
      });
      const c = start(cli, [
        "reply-all",
        "--target",
        h.service.address,
        "--tls-ca",
        join(certs, "ca.pem"),
        "--tls-server-name",
        "icmpfwd.test",
      ]);
      await sessions(h, 1, c);
      expect(await stop(c)).toMatch(/^summary policy=reply-all .* sessions=1$/m);
      // An unreadable CA file is "anything else": exit 1.
      const bad = await runToEnd(cli, [
        "reply-all",
        "--target",
        h.service.address,
        "--tls-ca",
        join(certs, "missing.pem"),
      ]);
      expect(bad.code, bad.err).toBe(1);
    },
  },
];

/** Why the Python and Go CLIs cannot run here, or null. */
async function missing(): Promise<string | null> {
  if (!existsSync(PYTHON)) return `${PYTHON} is missing`;
  const py = await exec(PYTHON, ["-c", "import grpc, google.protobuf"]);
  if (py.code !== 0) return "python3-grpcio / python3-protobuf are not installed";
  if ((await exec("sh", ["-c", "command -v go && command -v openssl"])).code !== 0)
    return "go (golang-go) or openssl is not installed";
  if (!existsSync("/usr/share/gocode/src/google.golang.org/grpc"))
    return "golang-google-grpc-dev is not installed";
  return null;
}

const why = await missing();
if (why !== null && inCI) throw new Error(`the CLI contract test needs: ${why}`);
const d = why === null ? describe : describe.skip;

d(
  `the policy CLI contract (docs/cli-contract.md)${why === null ? "" : ` (skipped: ${why})`}`,
  () => {
    beforeAll(async () => {
      goBinary = join(tempDir("icmpfwd-contract-go-"), "icmpfwd-policy-go");
      const r = await exec(
        join(GO_DIR, "go.sh"),
        ["build", "-o", goBinary, "./cmd/icmpfwd-policy-go"],
        {
          timeoutMs: BUILD_TIMEOUT_MS - 5_000,
        },
      );
      if (r.code !== 0) throw new Error(`building icmpfwd-policy-go failed: ${r.stderr}`);
      certs = tempDir("icmpfwd-contract-tls-");
      execFileSync(
        "sh",
        [
          "-c",
          `openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.pem &&
        openssl req -newkey rsa:2048 -nodes -subj /CN=icmpfwd.test -keyout server.key -out server.csr &&
        printf 'subjectAltName=DNS:icmpfwd.test\\n' > san.ext &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -out server.pem -extfile san.ext`,
        ],
        { cwd: certs, stdio: "pipe" },
      );
    }, BUILD_TIMEOUT_MS);

    afterEach(async () => {
      for (const r of running) if (r.child.exitCode === null) r.child.kill("SIGKILL");
      await Promise.all(running.map((r) => r.exited));
      running = [];
      for (const h of services) await h.close();
      services = [];
    });

    describe.each(Object.keys(CLIS))("%s", (language) => {
      it.each(ROWS.map((r) => [r.rule, r] as const))("%s", async (_rule, row) => {
        const cli = CLIS[language];
        if (cli === undefined) throw new Error(language);
        await row.run(cli);
      });
    });
  },
);
