/**
 * The network-namespace harness every e2e test uses. Network safety is the point of this file:
 * anything that creates a TUN device or sends packets does so inside a namespace created here
 * with a unique name, and every namespace is deleted afterwards, even when a test fails (each
 * test file calls `destroy()` in afterAll, and a process-exit hook removes any left behind).
 * Tests use only 198.18.0.0/15 and fd00::/8 inside these namespaces.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe } from "vitest";

export const inCI: boolean = process.env.CI === "true" || process.env.CI === "1";

function which(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

function checkPrerequisites(tools: readonly string[]): { ok: boolean; reason: string } {
  if (process.getuid?.() !== 0) return { ok: false, reason: "needs root (CAP_NET_ADMIN)" };
  try {
    accessSync("/dev/net/tun", constants.R_OK | constants.W_OK);
  } catch {
    return { ok: false, reason: "needs /dev/net/tun (modprobe tun)" };
  }
  const missing = tools.filter((t) => !which(t));
  if (missing.length > 0) {
    return { ok: false, reason: `needs ${missing.join(", ")} (see .ci/run for the apt packages)` };
  }
  return { ok: true, reason: "" };
}

/** Root, /dev/net/tun and the base tools every e2e test needs. */
export const prereq: { ok: boolean; reason: string } = checkPrerequisites(["ip", "ping", "nstat"]);

/**
 * A describe block for tests that need a real netns. On a machine without the prerequisites it
 * is skipped with the reason; under CI=true a missing prerequisite is a failure, never a skip.
 */
export function describeNetns(
  title: string,
  fn: () => void,
  extraTools: readonly string[] = [],
): void {
  const check =
    extraTools.length > 0 ? checkPrerequisites(["ip", "ping", "nstat", ...extraTools]) : prereq;
  if (check.ok) {
    describe(title, fn);
    return;
  }
  if (inCI) {
    throw new Error(`${title}: missing prerequisite in CI: ${check.reason}`);
  }
  describe.skip(`${title} (skipped: ${check.reason})`, fn);
}

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function exec(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number; input?: string } = {},
): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 << 20, killSignal: "SIGKILL" },
      (err, stdout, stderr) => {
        const code =
          err === null ? 0 : typeof err.code === "number" ? err.code : (child.exitCode ?? null);
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Runs a command and throws with its stderr when it fails. */
export async function run(
  cmd: string,
  args: readonly string[],
  timeoutMs?: number,
): Promise<string> {
  const r = await exec(cmd, args, { timeoutMs });
  if (r.code !== 0) {
    throw new Error(
      `${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()}`,
    );
  }
  return r.stdout;
}

// One registry per process, not per module instance: vitest loads this module afresh for each
// test file in the same worker, and a hook per file piled up exit listeners (Node warned at 11).
const registry = globalThis as { icmpfwdNetns?: { live: Set<string>; hooked: boolean } };
registry.icmpfwdNetns ??= { live: new Set<string>(), hooked: false };
const shared = registry.icmpfwdNetns;
const live = shared.live;

function installExitHook(): void {
  if (shared.hooked) return;
  shared.hooked = true;
  // Last resort: a test that crashed before afterAll must not leave a namespace behind.
  process.on("exit", () => {
    for (const name of live) spawnSync("ip", ["netns", "delete", name], { stdio: "ignore" });
  });
}

/** Spawns with the child's output collected, for diagnostics on failure. */
export interface Spawned {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function track(child: ChildProcess): Spawned {
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on("exit", (code, signal) => resolve({ code, signal }));
  });
  return { child, output: () => out, exited };
}

export class Netns {
  private readonly children = new Set<ChildProcess>();
  private destroyed = false;

  private constructor(readonly name: string) {}

  /** Creates a namespace with a unique name and brings its loopback up. */
  static async create(purpose = "t"): Promise<Netns> {
    installExitHook();
    const name = `icmpfwd-${purpose}-${process.pid}-${randomBytes(3).toString("hex")}`;
    await run("ip", ["netns", "add", name]);
    live.add(name);
    const ns = new Netns(name);
    await ns.sh("ip link set lo up");
    return ns;
  }

  /** The namespace file, for setns(2) (the TUN addon's `netns` option). */
  get path(): string {
    return `/var/run/netns/${this.name}`;
  }

  exec(
    cmd: string,
    args: readonly string[],
    opts: { timeoutMs?: number; input?: string } = {},
  ): Promise<ExecResult> {
    return exec("ip", ["netns", "exec", this.name, cmd, ...args], opts);
  }

  /**
   * The kernel's ping, counting replies at the kernel rather than trusting ping's summary.
   * Once a reply has come back, iputils ping waits only max(2 x the largest RTT, the interval)
   * after its last probe (ping_common.c schedule_exit), so with -i 0.01 on a loaded machine a
   * last reply 10 ms late is summarised as lost although it arrived. `received` is the
   * namespace kernel's Echo Reply counter (IcmpInEchoReps / Icmp6InEchoReplies) after ping,
   * given up to 2 s for late ones when ping saw some replies but not all. `seqs` are the
   * icmp_seq values ping printed, in order: a reply that came after ping stopped listening is
   * counted in `received` but not printed, so compare `seqs` with a prefix of what you expect.
   */
  async ping(
    args: readonly string[],
    opts: { timeoutMs?: number } = {},
  ): Promise<ExecResult & { transmitted: number; received: number; seqs: number[] }> {
    const v6 = args.includes("-6") || args.some((a) => !a.startsWith("-") && a.includes(":"));
    const counter = v6 ? "Icmp6InEchoReplies" : "IcmpInEchoReps";
    const before = await this.nstat(counter);
    const r = await this.exec("ping", args, opts);
    const summary = parsePing(r.stdout);
    let received = (await this.nstat(counter)) - before;
    const deadline = Date.now() + 2000;
    while (summary.received > 0 && received < summary.transmitted && Date.now() < deadline) {
      await sleep(50);
      received = (await this.nstat(counter)) - before;
    }
    return { ...r, transmitted: summary.transmitted, received, seqs: replySeqs(r.stdout) };
  }

  /** Runs a shell command line in the namespace; throws when it fails. */
  async sh(cmdline: string, timeoutMs?: number): Promise<string> {
    return run("ip", ["netns", "exec", this.name, "sh", "-c", cmdline], timeoutMs);
  }

  spawn(cmd: string, args: readonly string[], env?: NodeJS.ProcessEnv): Spawned {
    const child = spawn("ip", ["netns", "exec", this.name, cmd, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: env ?? process.env,
    });
    this.children.add(child);
    child.on("exit", () => this.children.delete(child));
    return track(child);
  }

  /** Runs a Node program in the namespace with this Node (PATH is reset by `ip netns exec`). */
  spawnNode(script: string, args: readonly string[], env?: NodeJS.ProcessEnv): Spawned {
    return this.spawn(process.execPath, [script, ...args], env);
  }

  /** An absolute kernel SNMP/netstat counter of this namespace (`nstat -asz NAME`). */
  async nstat(counter: string): Promise<number> {
    const out = await this.sh(`nstat -asz ${counter}`);
    const line = out.split("\n").find((l) => l.startsWith(`${counter} `));
    if (line === undefined) throw new Error(`nstat has no counter ${counter}`);
    return Number(line.trim().split(/\s+/)[1]);
  }

  /** Kills what this namespace still runs and deletes it; safe to call twice. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const c of this.children) c.kill("SIGKILL");
    // Anything else still inside (a ping started by hand) goes too, then the namespace.
    await exec("ip", ["netns", "pids", this.name]).then(async (r) => {
      const pids = r.stdout.split(/\s+/).filter((p) => /^\d+$/.test(p));
      if (pids.length > 0) await exec("kill", ["-9", ...pids]);
    });
    await exec("ip", ["netns", "delete", this.name]);
    live.delete(this.name);
  }
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** Polls until `fn` returns a truthy value; throws after the timeout naming what it waited for. */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const why = last instanceof Error ? `: ${last.message}` : "";
      throw new Error(`timed out waiting for ${opts.what ?? "condition"}${why}`);
    }
    await sleep(opts.intervalMs ?? 25);
  }
}

export function tempDir(prefix = "icmpfwd-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A tcpdump capture on an interface inside a namespace. */
export class Capture {
  private constructor(
    private readonly proc: Spawned,
    readonly file: string,
  ) {}

  static async start(ns: Netns, iface: string, opts: { filter?: string } = {}): Promise<Capture> {
    const file = join(tempDir("icmpfwd-cap-"), "capture.pcap");
    const args = [
      "-i",
      iface,
      "-n",
      "-U",
      "--immediate-mode",
      // A larger kernel buffer, so a busy machine drops fewer captured packets.
      "-B",
      "8192",
      "-w",
      file,
      ...(opts.filter ? [opts.filter] : []),
    ];
    const proc = ns.spawn("tcpdump", args);
    // tcpdump says "listening on" once the socket is attached.
    await waitFor(() => proc.output().includes("listening on") || proc.child.exitCode !== null, {
      what: "tcpdump to start",
    });
    if (proc.child.exitCode !== null) throw new Error(`tcpdump failed: ${proc.output()}`);
    return new Capture(proc, file);
  }

  /** Stops the capture (after in-flight packets are written) and returns the file. */
  async stop(): Promise<string> {
    await sleep(100);
    this.proc.child.kill("SIGINT");
    await this.proc.exited;
    return this.file;
  }
}

/** Reads fields from a capture with tshark; one row per packet. */
export async function tsharkFields(
  file: string,
  fields: readonly string[],
  displayFilter?: string,
): Promise<string[][]> {
  if (!existsSync(file)) throw new Error(`no capture file ${file}`);
  const args = ["-r", file, "-T", "fields", "-E", "separator=\t"];
  for (const f of fields) args.push("-e", f);
  if (displayFilter) args.push("-Y", displayFilter);
  const out = await run("tshark", args);
  return out
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => l.split("\t"));
}

/** The icmp_seq of every reply iputils ping printed, in order. */
export function replySeqs(output: string): number[] {
  return [...output.matchAll(/bytes from .*icmp_seq=(\d+)/g)].map((m) => Number(m[1]));
}

/** Parses iputils ping's summary lines. */
export function parsePing(output: string): {
  transmitted: number;
  received: number;
  ttls: number[];
  rttMinMs: number | null;
  rttAvgMs: number | null;
} {
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(output);
  const ttls = [...output.matchAll(/ttl=(\d+)/g)].map((x) => Number(x[1]));
  const rtt = /= ([\d.]+)\/([\d.]+)\//.exec(output);
  return {
    transmitted: m ? Number(m[1]) : 0,
    received: m ? Number(m[2]) : 0,
    ttls,
    rttMinMs: rtt ? Number(rtt[1]) : null,
    rttAvgMs: rtt ? Number(rtt[2]) : null,
  };
}
