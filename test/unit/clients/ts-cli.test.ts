/**
 * `icmpfwd-policy` against docs/cli-contract.md: flags, environment, exit codes and log lines,
 * run from source (tsx) against scripted grpc-js services on loopback.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { lookup } from "node:dns/promises";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { status as grpcStatus } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { tempDir, waitFor } from "../../helpers/netns.js";
import { echoRequest, FakeService } from "./ts-fake-service.js";

const CLI = fileURLToPath(new URL("../../../clients/ts/src/cli.ts", import.meta.url));

interface Run {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
}

const running: Run[] = [];
let fakes: FakeService[] = [];
afterEach(() => {
  for (const r of running) if (r.child.exitCode === null) r.child.kill("SIGKILL");
  running.length = 0;
  for (const f of fakes) f.stop();
  fakes = [];
});

function cli(args: string[], env: Record<string, string> = {}): Run {
  const base = { ...process.env };
  delete base.ICMPFWD_TARGET;
  delete base.ICMPFWD_TOKEN;
  const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], {
    env: { ...base, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
  const r = { child, stdout: () => out, stderr: () => err, exited };
  running.push(r);
  return r;
}

async function fake(host = "127.0.0.1", port = 0): Promise<FakeService> {
  const f = new FakeService();
  await f.start(host, port);
  fakes.push(f);
  return f;
}

const lines = (r: Run): Record<string, unknown>[] =>
  r
    .stderr()
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);

const connected = (r: Run): number => r.stderr().split('"msg":"connected"').length - 1;

async function stop(r: Run): Promise<number | null> {
  r.child.kill("SIGTERM");
  return r.exited;
}

// Each run starts Node with tsx (about a second on an idle machine, many on a loaded one).
describe("icmpfwd-policy (TypeScript) follows docs/cli-contract.md", { timeout: 90_000 }, () => {
  it("--help prints every contract flag and exits 0", async () => {
    const r = cli(["--help"]);
    expect(await r.exited).toBe(0);
    for (const flag of [
      "--target",
      "--token",
      "--tls-ca",
      "--tls-cert",
      "--tls-key",
      "--tls-server-name",
      "--name",
      "--family",
      "--max-in-flight",
      "--n ",
      "--rate",
      "--burst",
      "--delay-ms",
      "--measure",
      "--resolve-interval-ms",
      "--allow",
      "--relay-budget-ms",
      "--unprivileged",
      "--verbose",
    ]) {
      expect(r.stdout()).toContain(flag);
    }
  });

  it("a usage error exits 2 with one line on stderr naming it", async () => {
    const cases: [string[], string][] = [
      [["even-reply", "--bogus"], "--bogus"],
      [["no-such-policy"], "no-such-policy"],
      [[], "policy"],
      [["every-nth", "--n", "0"], "--n"],
      [["even-reply", "--family=ipv5"], "ipv5"],
      [["even-reply", "--max-in-flight", "-1"], "--max-in-flight"],
      [["even-reply", "--resolve-interval-ms", "999"], "--resolve-interval-ms"],
      [["even-reply", "--target", "dns:///nameonly"], "dns:///nameonly"],
      [["even-reply", "--tls-cert", "/dev/null"], "--tls-key"],
      [["relay"], "relay needs --allow"],
      [["relay", "--allow", "198.18.30.0/24,nope"], 'not a prefix: "nope"'],
      [["relay", "--allow", "198.18.30.0/24", "--relay-budget-ms", "0"], "--relay-budget-ms"],
    ];
    const runs = cases.map(([args]) => cli(args));
    for (const [i, r] of runs.entries()) {
      expect(await r.exited, cases[i][0].join(" ")).toBe(2);
      const err = r.stderr().trim();
      expect(err.split("\n"), err).toHaveLength(1);
      expect(err).toContain(cases[i][1]);
    }
  });

  it("flags before or after the policy, --flag=value, the token from ICMPFWD_TOKEN; SIGTERM drains, prints the summary and exits 0", async () => {
    const f = await fake();
    const r = cli([`--target=${f.address}`, "even-reply", "--name", "cli-test", "-v"], {
      ICMPFWD_TOKEN: "from-env",
    });
    await waitFor(() => connected(r) === 1, { what: "connected" });
    const s = await f.stream();
    expect(s.authorization).toEqual(["Bearer from-env"]);
    const hello = s.received[0].message;
    expect(hello?.$case === "hello" && hello.value.clientName).toBe("cli-test");
    f.send(
      0,
      [1, 2, 3, 4].map((i) => echoRequest(i)),
    );
    await waitFor(() => f.batches().flat().length === 4, { what: "4 verdicts" });
    expect(await stop(r)).toBe(0);
    expect(r.stdout()).toBe(
      "summary policy=even-reply decided=4 reply=2 consume=2 fallthrough=0 errors=0 observed=0 sessions=1\n",
    );
    expect(s.received.map((m) => m.message?.$case)).toEqual(["hello", "verdicts", "drain"]);
    // Log lines: JSON, level a word, time, msg; target on every line about the service, session
    // once welcomed, trace_id on every line about a request.
    const ls = lines(r);
    for (const l of ls) {
      expect(["debug", "info", "warn", "error"]).toContain(l.level);
      expect(typeof l.msg).toBe("string");
      expect(Number.isNaN(Date.parse(String(l.time)))).toBe(false);
    }
    const conn = ls.find((l) => l.msg === "connected");
    expect(conn).toMatchObject({ level: "info", target: f.address, session: "s1" });
    const decided = ls.filter((l) => l.msg === "decided");
    expect(decided.map((l) => [l.sequence, l.action])).toEqual([
      [1, "consume"],
      [2, "reply"],
      [3, "consume"],
      [4, "reply"],
    ]);
    for (const l of decided) {
      expect(l).toMatchObject({
        level: "debug",
        target: f.address,
        session: "s1",
        trace_id: "0af7651916cd43dd8448eb211c80319c",
      });
    }
  });

  it("the target from ICMPFWD_TARGET when --target is not given", async () => {
    const f = await fake();
    const r = cli(["reply-all"], { ICMPFWD_TARGET: f.address });
    await waitFor(() => connected(r) === 1, { what: "connected" });
    expect(lines(r).find((l) => l.msg === "connected")?.target).toBe(f.address);
    expect(await stop(r)).toBe(0);
  });

  it("a comma-separated list and dns:/// open one session per service", async () => {
    const a = await fake();
    const b = await fake();
    const addrs = (await lookup("localhost", { all: true, order: "verbatim" })).map(
      (x) => x.address,
    );
    const byName = await fake(addrs[0], 0);
    for (const extra of addrs.slice(1)) await fake(extra, byName.port);
    const r = cli([
      "reply-all",
      "--target",
      `${a.address},${b.address},dns:///localhost:${byName.port}`,
    ]);
    await waitFor(() => connected(r) === 2 + addrs.length, { what: "every session" });
    const targets = lines(r)
      .filter((l) => l.msg === "connected")
      .map((l) => l.target)
      .sort();
    const expected = [
      a.address,
      b.address,
      ...addrs.map((x) => (x.includes(":") ? `[${x}]:${byName.port}` : `${x}:${byName.port}`)),
    ].sort();
    expect(targets).toEqual(expected);
    expect(await stop(r)).toBe(0);
    expect(r.stdout()).toContain(`sessions=${2 + addrs.length}`);
  });

  it("refused credentials exit 2, a refused Hello exits 1", async () => {
    const auth = await fake();
    auth.refuse = { code: grpcStatus.UNAUTHENTICATED, details: "missing or bad token" };
    const hello = await fake();
    hello.refuse = { code: grpcStatus.FAILED_PRECONDITION, details: "unsupported version" };
    const a = cli(["drop-all", "--target", auth.address, "--token", "wrong"]);
    const h = cli(["drop-all", "--target", hello.address]);
    expect(await a.exited).toBe(2);
    expect(a.stderr()).toMatch(/authentication failed.*UNAUTHENTICATED: missing or bad token/);
    expect(await h.exited).toBe(1);
    expect(h.stderr()).toMatch(/refused the session.*FAILED_PRECONDITION/);
    for (const r of [a, h]) {
      expect(lines(r).some((l) => l.level === "error")).toBe(true);
      expect(r.stdout()).toMatch(/^summary policy=drop-all decided=0 /);
    }
  });

  it("an unreadable TLS file exits 1; an unreachable service is retried until SIGTERM (exit 0)", async () => {
    const dir = tempDir("icmpfwd-cli-");
    writeFileSync(join(dir, "key.pem"), "not a key");
    const tls = cli(["reply-all", "--tls-ca", join(dir, "missing.pem")]);
    expect(await tls.exited).toBe(1);
    expect(lines(tls)[0]).toMatchObject({ level: "error", msg: "cannot read the TLS files" });

    const f = await fake();
    const port = f.port;
    f.stop();
    const r = cli(["reply-all", "--target", `127.0.0.1:${port}`]);
    await waitFor(() => r.stderr().includes("disconnected; reconnecting"), {
      what: "a retry",
    });
    expect(lines(r).find((l) => l.msg === "disconnected; reconnecting")?.target).toBe(
      `127.0.0.1:${port}`,
    );
    expect(await stop(r)).toBe(0);
  });
});
