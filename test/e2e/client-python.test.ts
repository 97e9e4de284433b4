/**
 * The Python policy client (clients/python) end to end: `icmpfwd serve` in a private namespace
 * (TUN, kernel ping) on a unix socket, and `/usr/bin/python3 -m icmpfwd_client <policy>` run in
 * the same namespace against that socket. Every "no reply" result has a positive control.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import {
  describeNetns,
  exec,
  inCI,
  Netns,
  parsePing,
  type Spawned,
  tempDir,
  waitFor,
} from "../helpers/netns.js";
import { type ServeProcess, startServe } from "../helpers/serve.js";

const PYTHON = "/usr/bin/python3";
const CLIENT_DIR = fileURLToPath(new URL("../../clients/python", import.meta.url));

/** Whether Debian's python3-grpcio and python3-protobuf are importable by /usr/bin/python3. */
async function pythonReady(): Promise<string | null> {
  if (!existsSync(PYTHON)) return `${PYTHON} is missing`;
  const r = await exec(PYTHON, ["-c", "import grpc, google.protobuf"]);
  return r.code === 0 ? null : "python3-grpcio / python3-protobuf are not installed";
}

/** The icmp_seq of every reply ping printed, in order. */
function replySeqs(output: string): number[] {
  return [...output.matchAll(/bytes from .*icmp_seq=(\d+)/g)].map((m) => Number(m[1]));
}

describeNetns("the Python policy client end to end", () => {
  let ns: Netns;
  let serve: ServeProcess | null = null;
  let clients: Spawned[] = [];
  let skipReason: string | null = null;

  beforeAll(async () => {
    skipReason = await pythonReady();
    if (skipReason !== null && inCI) throw new Error(skipReason);
    ns = await Netns.create("pycl");
  });

  afterEach(async () => {
    for (const c of clients) if (c.child.exitCode === null) c.child.kill("SIGKILL");
    clients = [];
    if (serve !== null) await serve.stop();
    serve = null;
  });

  afterAll(async () => {
    await ns?.destroy();
  });

  const counter = (s: Record<string, number>, k: string) => s[k] ?? 0;

  async function start(args: string[] = []): Promise<{ serve: ServeProcess; socket: string }> {
    const socket = join(tempDir("icmpfwd-pysock-"), "s.sock");
    serve = await startServe(ns, ["--listen", `unix:${socket}`, ...args]);
    return { serve, socket };
  }

  /** Starts the client in the namespace (`ip netns exec` resets PATH: absolute paths only). */
  function client(socket: string, args: string[]): Spawned {
    const c = ns.spawn(PYTHON, ["-m", "icmpfwd_client", ...args, "--target", `unix:${socket}`], {
      ...process.env,
      PYTHONPATH: CLIENT_DIR,
      PYTHONUNBUFFERED: "1",
    });
    clients.push(c);
    return c;
  }

  async function connected(c: Spawned, s: ServeProcess): Promise<void> {
    await waitFor(() => c.output().includes("welcome: session=") || c.child.exitCode !== null, {
      what: "the Python client's Welcome",
      timeoutMs: 15_000,
    });
    if (c.child.exitCode !== null) throw new Error(`the Python client exited: ${c.output()}`);
    await s.waitStats((x) => counter(x, "service.sessions") === 1, "one session");
  }

  async function ping(count: number): Promise<{ out: string; received: number }> {
    const r = await ns.exec(
      "ping",
      ["-n", "-c", String(count), "-i", "0.05", "-W", "1", "198.18.0.2"],
      { timeoutMs: 30_000 },
    );
    const p = parsePing(r.stdout);
    expect(p.transmitted).toBe(count);
    return { out: r.stdout, received: p.received };
  }

  /** SIGTERM: the client drains, prints its summary and exits 0. */
  async function stopClient(c: Spawned): Promise<string> {
    c.child.kill("SIGTERM");
    const { code } = await c.exited;
    expect(code, c.output()).toBe(0);
    return c.output();
  }

  it("even-reply: ping sees exactly the even sequences answered, and the stats agree", async (ctx) => {
    if (skipReason !== null) ctx.skip();
    const { serve, socket } = await start();
    // Positive control: no client yet, so the service's on-no-client default (the built-in reply).
    expect((await ping(3)).received).toBe(3);
    const c = client(socket, ["even-reply"]);
    await connected(c, serve);
    const before = serve.stats();
    const r = await ping(20);
    expect(r.received).toBe(10);
    expect(replySeqs(r.out)).toEqual([2, 4, 6, 8, 10, 12, 14, 16, 18, 20]);
    const delta = (s: Record<string, number>, k: string) => counter(s, k) - counter(before, k);
    const s = await serve.waitVerdicts(20, before);
    expect(delta(s, "service.outcomes.reply.verdict")).toBe(10);
    expect(delta(s, "service.outcomes.consume.verdict")).toBe(10);
    expect(delta(s, "icmp.v4.packetsSent.echoReply")).toBe(10);
    expect(counter(s, "service.outcomes.fallthrough.timeout")).toBe(0);
    const out = await stopClient(c);
    expect(out).toMatch(/summary: decided=20 reply=10 consume=10 fallthrough=0/);
  });

  it("drop-all answers nothing and reply-all answers everything", async (ctx) => {
    if (skipReason !== null) ctx.skip();
    const { serve, socket } = await start();
    const drop = client(socket, ["drop-all"]);
    await connected(drop, serve);
    expect((await ping(5)).received).toBe(0);
    expect(await stopClient(drop)).toMatch(/summary: decided=5 reply=0 consume=5/);
    await serve.waitStats((x) => counter(x, "service.sessions") === 0, "no sessions");
    const reply = client(socket, ["reply-all"]);
    await connected(reply, serve);
    expect((await ping(5)).received).toBe(5);
    expect(await stopClient(reply)).toMatch(/summary: decided=5 reply=5 consume=0/);
  });

  it("observe-log sees copies and decides nothing: the service's default still answers", async (ctx) => {
    if (skipReason !== null) ctx.skip();
    const { socket } = await start();
    const c = client(socket, ["observe-log"]);
    await waitFor(() => c.output().includes("welcome: session=") || c.child.exitCode !== null, {
      what: "the observer's Welcome",
      timeoutMs: 15_000,
    });
    expect((await ping(3)).received).toBe(3);
    await waitFor(
      () =>
        (c.output().match(/observed request=\d+ 198\.18\.0\.1 > 198\.18\.0\.2/g) ?? []).length ===
        3,
      {
        what: "3 observed lines",
      },
    );
    expect(await stopClient(c)).toMatch(/summary: decided=0 .* observed=3/);
  });

  it("with --token: the client with the token decides, one without fails with a clear message", async (ctx) => {
    if (skipReason !== null) ctx.skip();
    const token = "python-client-token-0123456789";
    const { serve, socket } = await start(["--token", token]);
    const bad = client(socket, ["drop-all"]);
    const { code } = await bad.exited;
    expect(code).toBe(2);
    expect(bad.output()).toMatch(/authentication failed: .*UNAUTHENTICATED/);
    const good = client(socket, ["drop-all", "--token", token]);
    await connected(good, serve);
    expect((await ping(3)).received).toBe(0);
    expect(await stopClient(good)).toMatch(/summary: decided=3 reply=0 consume=3/);
  });

  it("reconnects after the service restarts and decides again", async (ctx) => {
    if (skipReason !== null) ctx.skip();
    const first = await start();
    const c = client(first.socket, ["drop-all"]);
    await connected(c, first.serve);
    expect((await ping(2)).received).toBe(0);
    await first.serve.stop();
    serve = null;
    // Same socket path again: the client's backoff loop finds the new service.
    serve = await startServe(ns, ["--listen", `unix:${first.socket}`]);
    const s2 = serve;
    await waitFor(() => (c.output().match(/welcome: session=/g) ?? []).length >= 2, {
      what: "a second Welcome",
      timeoutMs: 15_000,
    });
    await s2.waitStats((x) => counter(x, "service.sessions") === 1, "one session again");
    expect((await ping(2)).received).toBe(0);
    // Positive control: once the client is gone, the service's default replies.
    expect(await stopClient(c)).toMatch(/summary: decided=4 reply=0 consume=4/);
    await s2.waitStats((x) => counter(x, "service.sessions") === 0, "no sessions");
    expect((await ping(2)).received).toBe(2);
  });
});
