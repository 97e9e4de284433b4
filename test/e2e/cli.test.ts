/**
 * The command line as someone reading `--help` meets it: `icmpfwd` alone changes nothing;
 * `--version`; one line per error with the status name, the target and a hint; `health` with
 * grpc_health_probe's exit codes; `--json` one object per line; a pipe closed early ends
 * quietly; logs with level words, readable on a terminal; no deprecation warnings with TLS.
 * Services run as root inside private namespaces; the commands without a service need neither.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Action, Family, Mode } from "../../src/gen/icmpfwd/v1/forwarder.js";
import {
  describeNetns,
  type ExecResult,
  exec,
  Netns,
  type Spawned,
  tempDir,
  waitFor,
} from "../helpers/netns.js";
import { MAIN_JS, type ServeProcess, startServe } from "../helpers/serve.js";
import { TestClient } from "../integration/service/harness.js";

const VERSION = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  }
).version;
const HINT = "is `icmpfwd serve` running? check --target/ICMPFWD_TARGET";

/** The built CLI in this (root) namespace. */
function icmpfwd(...args: string[]): Promise<ExecResult> {
  return exec(process.execPath, [MAIN_JS, ...args]);
}

/** The built CLI inside `ns` (for TCP targets only reachable there). */
function icmpfwdIn(ns: Netns, ...args: string[]): Promise<ExecResult> {
  return ns.exec(process.execPath, [MAIN_JS, ...args]);
}

describe("icmpfwd without a service", () => {
  it("icmpfwd --version prints icmpfwd's and Node's versions and exits 0", async () => {
    const r = await icmpfwd("--version");
    expect([r.code, r.stdout, r.stderr]).toEqual([
      0,
      `icmpfwd ${VERSION} (node ${process.version})\n`,
      "",
    ]);
  });

  it("icmpfwd stat: an unknown command, one line suggesting stats, exit 2", async () => {
    const r = await icmpfwd("stat");
    expect([r.code, r.stdout, r.stderr]).toEqual([
      2,
      "",
      "icmpfwd: unknown command 'stat' (Did you mean stats?); see icmpfwd --help\n",
    ]);
  });

  it("serve --help shows --no-configure-kernel (on by default) and not --configure-kernel", async () => {
    const r = await icmpfwd("serve", "--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^ {2}--no-configure-kernel +do not assign the kernel-side addresses and routes with ip\(8\) at start-up \[env ICMPFWD_CONFIGURE_KERNEL=false\]$/m,
    );
    expect(r.stdout).not.toMatch(/--configure-kernel /);
    // Off by default: the option that turns it on is the one shown.
    expect(r.stdout).toMatch(/^ {2}--promiscuous /m);
    expect(r.stdout).not.toContain("--no-promiscuous");
  });

  it("an unreachable service: one line with UNAVAILABLE, the target, the cause and the hint, exit 1", async () => {
    const r = await icmpfwd("stats", "--target", "127.0.0.1:1");
    expect([r.code, r.stdout, r.stderr]).toEqual([
      1,
      "",
      `icmpfwd: 127.0.0.1:1: UNAVAILABLE: cannot reach the service (connect ECONNREFUSED 127.0.0.1:1): ${HINT}\n`,
    ]);
  });

  it("health of an unreachable service exits 2 (grpc_health_probe: connection failure)", async () => {
    const r = await icmpfwd("health", "--target", "127.0.0.1:1");
    expect([r.code, r.stdout]).toEqual([2, ""]);
    expect(r.stderr).toMatch(/^icmpfwd: 127\.0\.0\.1:1: UNAVAILABLE: .*\n$/);
  });

  it("health with bad arguments exits 1, with a TLS file it cannot read 20", async () => {
    expect((await icmpfwd("health", "--no-such-flag")).code).toBe(1);
    const r = await icmpfwd("health", "--tls-ca", "/nonexistent/ca.pem");
    expect([r.code, r.stderr]).toEqual([
      20,
      "icmpfwd: --tls-ca /nonexistent/ca.pem: ENOENT: no such file or directory, open '/nonexistent/ca.pem'\n",
    ]);
  });
});

describeNetns("icmpfwd with no command", () => {
  let ns: Netns;

  beforeAll(async () => {
    ns = await Netns.create("cli");
  });

  afterAll(async () => {
    await ns?.destroy();
  });

  it("prints the help and exits 2, creating no device", async () => {
    const r = await ns.exec(process.execPath, [MAIN_JS]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^Usage: icmpfwd \[options\] \[command\]/);
    expect(r.stderr).toContain("serve [options]");
    expect(r.stdout).toBe("");
    // Only the namespace's own loopback: no TUN, no address added.
    expect(await ns.sh("ip -o link show | awk '{print $2}'")).toBe("lo:\n");
    // Positive control: with `serve` named, the same namespace gets the device.
    const serve = await startServe(ns);
    try {
      expect(await ns.sh("ip -o link show | awk '{print $2}'")).toBe("lo:\nicmpfwd0:\n");
    } finally {
      await serve.stop();
    }
  });
});

const OPS = "ops-token-0123456789abcdef";
const VIEWER = "viewer-token-0123456789abcdef";

describeNetns("the client commands against a running service", () => {
  let ns: Netns;
  let serve: ServeProcess;
  let target: string;
  const clients: TestClient[] = [];

  beforeAll(async () => {
    ns = await Netns.create("clisvc");
    const dir = tempDir("icmpfwd-cli-");
    target = `unix:${join(dir, "icmpfwd.sock")}`;
    const authz = join(dir, "authz.json");
    writeFileSync(
      authz,
      JSON.stringify({
        tokens: { [OPS]: "ops", [VIEWER]: "viewer" },
        identities: {
          ops: { modes: ["decide", "observe", "admin"] },
          viewer: { modes: ["observe"] },
        },
      }),
    );
    serve = await startServe(ns, [
      ...["--listen", target, "--authz", authz, "--health-listen", "127.0.0.1:50052"],
      ...["--deadline", "10000", "--drain-timeout", "20000"],
    ]);
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await serve?.stop("SIGKILL");
    await ns?.destroy();
  });

  it("health of a serving service prints SERVING and exits 0, on the listener and on --health-listen", async () => {
    const r = await icmpfwd("health", "--target", target);
    expect([r.code, r.stdout, r.stderr]).toEqual([0, "SERVING\n", ""]);
    const plain = await icmpfwdIn(ns, "health", "--target", "127.0.0.1:50052");
    expect([plain.code, plain.stdout, plain.stderr]).toEqual([0, "SERVING\n", ""]);
  });

  it("status names in errors: UNAUTHENTICATED with the token hint, PERMISSION_DENIED naming who and what", async () => {
    const anon = await icmpfwd("stats", "--target", target);
    expect([anon.code, anon.stdout, anon.stderr]).toEqual([
      1,
      "",
      `icmpfwd: ${target}: UNAUTHENTICATED: no credentials: send \`authorization: Bearer TOKEN\` or a client certificate; give the service's token (--token/ICMPFWD_TOKEN) or a client certificate it trusts (--tls-cert/--tls-key)\n`,
    ]);
    const viewer = await icmpfwd(
      "route",
      "add",
      "198.18.9.0/24",
      "--target",
      target,
      "--token",
      VIEWER,
    );
    expect([viewer.code, viewer.stdout, viewer.stderr]).toEqual([
      1,
      "",
      `icmpfwd: ${target}: PERMISSION_DENIED: authenticated as viewer but not allowed to run \`icmpfwd route add\`; see --authz (identity "viewer" may not use the admin RPCs)\n`,
    ]);
    // Positive control: the same command with the admin's token.
    const ops = await icmpfwd("route", "add", "198.18.9.0/24", "--target", target, "--token", OPS);
    expect([ops.code, ops.stderr]).toEqual([0, ""]);
  });

  it("sessions --json prints one object per line, enums by name", async () => {
    clients.push(
      await TestClient.connect(
        target,
        {
          clientName: "v4-only",
          mode: Mode.MODE_DECIDE,
          filter: {
            family: Family.FAMILY_IPV4,
            sourcePrefixes: [],
            destinationPrefixes: [],
            temporaryOnly: false,
          },
        },
        { token: OPS },
      ),
      await TestClient.connect(
        target,
        { clientName: "watcher", mode: Mode.MODE_OBSERVE },
        {
          token: OPS,
        },
      ),
    );
    const r = await icmpfwd("sessions", "--json", "--target", target, "--token", OPS);
    expect([r.code, r.stderr]).toEqual([0, ""]);
    const lines = r.stdout.split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe("");
    const byName = Object.fromEntries(
      lines.slice(0, 2).map((l) => {
        const s = JSON.parse(l) as { clientName: string };
        return [s.clientName, s];
      }),
    );
    expect(byName["v4-only"]).toMatchObject({
      mode: "decide",
      filter: { family: "ipv4", sourcePrefixes: [], destinationPrefixes: [], temporaryOnly: false },
    });
    expect(byName.watcher).toMatchObject({ mode: "observe" });
    // The table says the same by name.
    const table = await icmpfwd("sessions", "--target", target, "--token", OPS);
    expect(table.stdout).toMatch(/ v4-only +decide +ipv4 /);
    expect(table.stdout).toMatch(/ watcher +observe +\* /);
    for (const c of clients.splice(0)) c.close();
  });

  it("stats --watch | head -1: exit 0, one line, no stack trace (a real pipe)", async () => {
    const r = await exec("bash", [
      "-c",
      `"$0" "$1" stats --watch --interval 100 --target "$2" --token "$3" | head -1; echo "status=\${PIPESTATUS[0]}"`,
      process.execPath,
      MAIN_JS,
      target,
      OPS,
    ]);
    expect(r.stderr).toBe("");
    const out = r.stdout.split("\n");
    expect(out[0]).toMatch(/^NAME +VALUE$/);
    expect(out.slice(1)).toEqual(["status=0", ""]);
  });

  it("log lines carry level words, never numbers", () => {
    const lines = serve.proc
      .output()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { level: unknown; msg: string });
    expect(lines.find((l) => l.msg === "serving")?.level).toBe("info");
    // The refusals above are in the audit log as warnings.
    expect(lines.find((l) => l.msg === "call refused")?.level).toBe("warn");
    for (const l of lines)
      expect(["trace", "debug", "info", "warn", "error", "fatal"]).toContain(l.level);
  });

  it("health while draining prints NOT_SERVING and exits 4, on both listeners", async () => {
    const holder = await TestClient.connect(
      target,
      { clientName: "holder", mode: Mode.MODE_DECIDE },
      {
        token: OPS,
      },
    );
    clients.push(holder);
    const pinging = ns.exec("ping", ["-n", "-c", "1", "-W", "12", "198.18.0.2"]);
    const held = await holder.waitEvents(1);
    const exited = serve.stop("SIGTERM");
    await holder.until(() => holder.drainingSeen, "Draining");
    // Both at once: the drain lasts only while the held request waits for its verdict.
    const [r, plain] = await Promise.all([
      icmpfwd("health", "--target", target),
      icmpfwdIn(ns, "health", "--target", "127.0.0.1:50052"),
    ]);
    expect([r.code, r.stdout, r.stderr]).toEqual([4, "NOT_SERVING\n", ""]);
    expect([plain.code, plain.stdout, plain.stderr]).toEqual([4, "NOT_SERVING\n", ""]);
    holder.decide(held, Action.ACTION_REPLY);
    expect((await exited).code).toBe(0);
    await pinging;
  });
});

describeNetns("the client commands over mTLS", () => {
  let ns: Netns;
  let serve: ServeProcess;
  let dir: string;

  beforeAll(async () => {
    ns = await Netns.create("clitls");
    dir = tempDir("icmpfwd-cli-tls-");
    const sh = (cmd: string): void => {
      execFileSync("sh", ["-c", cmd], { cwd: dir, stdio: "pipe" });
    };
    sh(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.pem",
    );
    for (const [name, san] of [
      ["server", "subjectAltName=IP:127.0.0.1"],
      ["operator", "extendedKeyUsage=clientAuth"],
    ])
      sh(
        `openssl req -newkey rsa:2048 -nodes -subj /CN=${name} -keyout ${name}.key -out ${name}.csr &&
           printf '%s\\n' '${san}' > ${name}.ext &&
           openssl x509 -req -in ${name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -out ${name}.pem -extfile ${name}.ext`,
      );
    serve = await startServe(ns, [
      ...["--listen", "127.0.0.1:50051", "--health-listen", "127.0.0.1:50052"],
      ...["--tls-cert", join(dir, "server.pem"), "--tls-key", join(dir, "server.key")],
      ...["--tls-client-ca", join(dir, "ca.pem")],
    ]);
  });

  afterAll(async () => {
    await serve?.stop();
    await ns?.destroy();
  });

  it("no deprecation warnings on stderr with TLS (no IP address as SNI)", async () => {
    const r = await icmpfwdIn(
      ns,
      ...["stats", "--json", "--target", "127.0.0.1:50051", "--tls-ca", join(dir, "ca.pem")],
      ...["--tls-cert", join(dir, "operator.pem"), "--tls-key", join(dir, "operator.key")],
    );
    expect([r.code, r.stderr]).toEqual([0, ""]);
    expect(Object.keys(JSON.parse(r.stdout) as object)).toEqual(["takenAt", "counters", "gauges"]);
    expect(serve.proc.output()).not.toContain("DeprecationWarning");
  });

  it("a probe without a client certificate: --health-listen answers SERVING (0); the mTLS listener refuses it (2)", async () => {
    const plain = await icmpfwdIn(ns, "health", "--target", "127.0.0.1:50052");
    expect([plain.code, plain.stdout, plain.stderr]).toEqual([0, "SERVING\n", ""]);
    const noCert = await icmpfwdIn(
      ns,
      ...["health", "--target", "127.0.0.1:50051", "--tls-ca", join(dir, "ca.pem")],
    );
    expect([noCert.code, noCert.stdout]).toEqual([2, ""]);
    expect(noCert.stderr).toMatch(/^icmpfwd: 127\.0\.0\.1:50051: UNAVAILABLE: .*\n$/);
    expect(noCert.stderr).not.toContain("DeprecationWarning");
  });
}, ["openssl"]);

describeNetns("logs on a terminal", () => {
  let ns: Netns;
  let term: Spawned | null = null;

  beforeAll(async () => {
    ns = await Netns.create("clipty");
  });

  afterAll(async () => {
    term?.child.kill("SIGKILL");
    await ns?.destroy();
  });

  it("--log-format auto on a pty: one readable line per event, the level as a word, no JSON", async () => {
    // script(1) gives serve a pty for stdout; serve runs in the background so its pid is known.
    const cmd = `"${process.execPath}" "${MAIN_JS}" serve --metrics-listen off & echo "pid=$!"; wait $!`;
    term = ns.spawn("script", ["-qfec", cmd, "/dev/null"]);
    const text = (): string =>
      (term?.output() ?? "").replace(/\u001b\[[0-9;]*m/g, "").replace(/\r/g, "");
    await waitFor(() => text().includes("serving"), {
      what: "serve's pretty 'serving' line",
      timeoutMs: 15_000,
    });
    const pid = /pid=(\d+)/.exec(text())?.[1];
    expect(pid).toMatch(/^\d+$/);
    await ns.exec("kill", ["-TERM", String(pid)]);
    await term.exited;
    const lines = text()
      .split("\n")
      .filter((l) => l.startsWith("["));
    expect(lines.find((l) => l.includes(" serving "))).toMatch(
      /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] INFO: serving \{"tun":"icmpfwd0",.*\}$/,
    );
    expect(lines.find((l) => l.includes(" stopped "))).toMatch(/^\[[^\]]+\] INFO: stopped \{/);
    expect(text()).not.toMatch(/^\{"level"/m);
  });
}, ["script"]);
