/**
 * @icmpfwd/client as a package: `npm pack` gives a tarball that installs into an empty directory
 * outside the repository, where the ten-line policy of clients/README.md (examples/even.ts) runs
 * as the README says (`npx tsx even.ts TARGET`) against a real `icmpfwd serve` in a private
 * namespace, and the install has built the relay's ICMP addon there (`icmpfwd-policy relay`
 * starts); and `npx icmpfwd-policy` works from the repository root after `npm install`.
 * Pack and install run once for the file.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { describeNetns, Netns, run, tempDir, waitFor } from "../helpers/netns.js";
import { type ServeProcess, startServe } from "../helpers/serve.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const EVEN = join(ROOT, "examples", "even.ts");
/** Pack (tsc on a loaded machine) and install (npm, its cache or the registry). */
const SETUP_TIMEOUT_MS = 300_000;

const counter = (s: Record<string, number>, k: string): number => s[k] ?? 0;
const connected = (p: { output(): string }): boolean => p.output().includes('"msg":"connected"');

/** A command run through npx in a process group of its own. */
interface Group {
  child: ChildProcess;
  output(): string;
  closed: Promise<void>;
}

describeNetns("@icmpfwd/client as an npm package", () => {
  let ns: Netns;
  let serve: ServeProcess | null = null;
  let policy: Group | null = null;
  /** An empty directory outside the repository with only the tarball (and tsx) installed. */
  let outside = "";
  let packed: string[] = [];

  beforeAll(async () => {
    const dest = tempDir("icmpfwd-pack-");
    const out = await run(
      "npm",
      ["pack", "-w", "@icmpfwd/client", "--pack-destination", dest, "--json"],
      SETUP_TIMEOUT_MS,
    );
    const [info] = JSON.parse(out.slice(out.indexOf("["))) as {
      filename: string;
      files: { path: string }[];
    }[];
    packed = info.files.map((f) => f.path).sort();
    outside = tempDir("icmpfwd-outside-");
    writeFileSync(
      join(outside, "package.json"),
      `${JSON.stringify({ name: "my-policy", private: true, type: "module" })}\n`,
    );
    const tsx = (
      JSON.parse(readFileSync(join(ROOT, "node_modules/tsx/package.json"), "utf8")) as {
        version: string;
      }
    ).version;
    await run(
      "sh",
      [
        "-c",
        `cd '${outside}' && npm install --no-audit --no-fund --prefer-offline '${join(dest, info.filename)}' tsx@${tsx}`,
      ],
      SETUP_TIMEOUT_MS,
    );
    copyFileSync(EVEN, join(outside, "even.ts"));
    ns = await Netns.create("pkgts");
  }, SETUP_TIMEOUT_MS);

  afterEach(async () => {
    if (policy !== null) {
      try {
        process.kill(-policy.child.pid!, "SIGKILL");
      } catch {
        // the group is gone already
      }
      await policy.closed;
    }
    policy = null;
    if (serve !== null) await serve.stop();
    serve = null;
  });

  afterAll(async () => {
    await ns?.destroy();
  });

  async function startService(): Promise<{ serve: ServeProcess; sock: string }> {
    const sock = join(tempDir("icmpfwd-sock-"), "s.sock");
    serve = await startServe(ns, ["--listen", `unix:${sock}`]);
    return { serve, sock };
  }

  /**
   * Runs a shell command line in `dir` inside the namespace, in a process group of its own (npx
   * runs the program as its child); waits for its first Welcome.
   */
  async function startIn(dir: string, cmdline: string): Promise<Group> {
    const child = spawn(
      "ip",
      ["netns", "exec", ns.name, "sh", "-c", `cd '${dir}' && exec ${cmdline}`],
      {
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, npm_config_update_notifier: "false" },
      },
    );
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    // "close": every process of the group that held the pipes is gone, not only npx.
    const closed = new Promise<void>((resolve) => child.on("close", () => resolve()));
    const p: Group = { child, output: () => out, closed };
    policy = p;
    await waitFor(() => connected(p) || child.exitCode !== null, {
      what: `${cmdline} to connect`,
      timeoutMs: 30_000,
    });
    if (child.exitCode !== null) throw new Error(`${cmdline} exited: ${out}`);
    return p;
  }

  /** What a terminal's Ctrl-C (or a service manager's stop) does: signal the whole group. */
  async function interrupt(p: Group, signal: NodeJS.Signals): Promise<string> {
    process.kill(-p.child.pid!, signal);
    await p.closed;
    return p.output();
  }

  async function ping(count: number, dst: string) {
    const args = ["-n", "-c", String(count), "-i", "0.05", "-W", "2", dst];
    return ns.ping(dst.includes(":") ? ["-6", ...args] : args);
  }

  it("the tarball holds the built package and the addon's sources only: dist/, native/, the build script, package.json", () => {
    for (const f of ["package.json", "dist/index.js", "dist/index.d.ts", "dist/cli.js"]) {
      expect(packed).toContain(f);
    }
    expect(packed.filter((f) => f !== "package.json" && !f.startsWith("dist/"))).toEqual([
      "README.md",
      "native/binding.gyp",
      "native/icmp_socket.cc",
      "scripts/build-addon.mjs",
    ]);
    expect(packed.filter((f) => f.endsWith(".map") || f.includes("src/"))).toEqual([]);
  });

  it("the ten-line policy, installed outside the repository, answers exactly the even sequences (IPv4 and IPv6)", async () => {
    const { serve, sock } = await startService();
    // Positive control: with no client, serve answers (fallthrough → the netstack's reply).
    expect((await ping(3, "198.18.0.2")).received).toBe(3);

    const p = await startIn(outside, `npx tsx even.ts unix:${sock}`);
    const v4 = await ping(20, "198.18.0.2");
    expect(v4.transmitted).toBe(20);
    expect(v4.received).toBe(10);
    expect(v4.seqs).toEqual([2, 4, 6, 8, 10, 12, 14, 16, 18, 20].slice(0, v4.seqs.length));
    const v6 = await ping(20, "fd00:1::2");
    expect(v6.transmitted).toBe(20);
    expect(v6.received).toBe(10);
    expect(v6.seqs).toEqual([2, 4, 6, 8, 10, 12, 14, 16, 18, 20].slice(0, v6.seqs.length));
    const s = await serve.waitVerdicts(40);
    expect(counter(s, "service.outcomes.reply.verdict")).toBe(20);
    expect(counter(s, "service.outcomes.consume.verdict")).toBe(20);
    expect(counter(s, "service.outcomes.fallthrough.noClient")).toBe(3);
    expect(counter(s, "service.outcomes.fallthrough.timeout")).toBe(0);

    // Ctrl-C: the policy drains and prints its counters.
    expect(await interrupt(p, "SIGINT")).toContain("{ reply: 20, consume: 20, fallthrough: 0 }");
    await serve.waitStats((x) => counter(x, "service.sessions") === 0, "the session closed");
  });

  it("the install built the relay's ICMP addon outside the repository: icmpfwd-policy relay starts, connects and stops with its summary", async () => {
    const pkg = join(outside, "node_modules/@icmpfwd/client");
    expect(existsSync(join(pkg, "native/build/Release/icmpfwd_icmp.node"))).toBe(true);
    const { sock } = await startService();
    const p = await startIn(
      outside,
      `npx icmpfwd-policy relay --allow 198.18.30.0/24 --target unix:${sock}`,
    );
    expect(await interrupt(p, "SIGTERM")).toContain(
      " relayed=0 relay_replies=0 relay_errors=0 relay_silent=0 relay_refused=0\n",
    );
  });

  it("npx icmpfwd-policy drop-all from the repository root answers none; reply-all (the control) answers all", async () => {
    const { serve, sock } = await startService();
    let p = await startIn(ROOT, `npx icmpfwd-policy reply-all --target unix:${sock}`);
    expect((await ping(10, "198.18.0.2")).received).toBe(10);
    expect(await interrupt(p, "SIGTERM")).toContain(
      "summary policy=reply-all decided=10 reply=10 consume=0 fallthrough=0 errors=0 observed=0 sessions=1\n",
    );

    p = await startIn(ROOT, `npx icmpfwd-policy drop-all --target unix:${sock}`);
    const none = await ping(10, "198.18.0.2");
    expect(none.transmitted).toBe(10);
    expect(none.received).toBe(0);
    const s = await serve.waitVerdicts(20);
    expect(counter(s, "service.outcomes.reply.verdict")).toBe(10);
    expect(counter(s, "service.outcomes.consume.verdict")).toBe(10);
    expect(await interrupt(p, "SIGTERM")).toContain(
      "summary policy=drop-all decided=10 reply=0 consume=10 fallthrough=0 errors=0 observed=0 sessions=1\n",
    );
  });
});
