/**
 * The Python policy client (clients/python) end to end: `icmpfwd serve` in a private namespace
 * (TUN, kernel ping) on a unix socket, and `/usr/bin/python3 -m icmpfwd_client <policy>` run in
 * the same namespace against that socket. Every "no reply" result has a positive control.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  describeNetns,
  exec,
  inCI,
  Netns,
  parsePing,
  replySeqs,
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

  async function ping(
    count: number,
    extra: string[] = [],
  ): Promise<{
    out: string;
    received: number;
    seqs: number[];
    rttMinMs: number | null;
    rttAvgMs: number | null;
  }> {
    const r = await ns.ping(
      ["-n", "-c", String(count), "-i", "0.05", "-W", "2", ...extra, "198.18.0.2"],
      { timeoutMs: 30_000 },
    );
    expect(r.transmitted).toBe(count);
    return {
      out: r.stdout,
      received: r.received,
      seqs: r.seqs,
      rttMinMs: parsePing(r.stdout).rttMinMs,
      rttAvgMs: parsePing(r.stdout).rttAvgMs,
    };
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
    expect(r.seqs).toEqual([2, 4, 6, 8, 10, 12, 14, 16, 18, 20].slice(0, r.seqs.length));
    const delta = (s: Record<string, number>, k: string) => counter(s, k) - counter(before, k);
    const s = await serve.waitVerdicts(20, before);
    expect(delta(s, "service.outcomes.reply.verdict")).toBe(10);
    expect(delta(s, "service.outcomes.consume.verdict")).toBe(10);
    expect(delta(s, "icmp.v4.packetsSent.echoReply")).toBe(10);
    expect(counter(s, "service.outcomes.fallthrough.timeout")).toBe(0);
    const out = await stopClient(c);
    expect(out).toMatch(/summary policy=\S+ decided=20 reply=10 consume=10 fallthrough=0/);
  });

  it("drop-all answers nothing and reply-all answers everything", async (ctx) => {
    if (skipReason !== null) ctx.skip();
    const { serve, socket } = await start();
    const drop = client(socket, ["drop-all"]);
    await connected(drop, serve);
    expect((await ping(5)).received).toBe(0);
    expect(await stopClient(drop)).toMatch(/summary policy=\S+ decided=5 reply=0 consume=5/);
    await serve.waitStats((x) => counter(x, "service.sessions") === 0, "no sessions");
    const reply = client(socket, ["reply-all"]);
    await connected(reply, serve);
    expect((await ping(5)).received).toBe(5);
    expect(await stopClient(reply)).toMatch(/summary policy=\S+ decided=5 reply=5 consume=0/);
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
    expect(await stopClient(c)).toMatch(/summary policy=\S+ decided=0 .* observed=3/);
  });

  it("with --token: the client with the token decides, one without fails with a clear message", async (ctx) => {
    if (skipReason !== null) ctx.skip();
    const token = "python-client-token-0123456789";
    const { serve, socket } = await start(["--token", token]);
    const bad = client(socket, ["drop-all"]);
    const { code } = await bad.exited;
    expect(code).toBe(2);
    expect(bad.output()).toMatch(/authentication failed \(check --token\): .*UNAUTHENTICATED/);
    const good = client(socket, ["drop-all", "--token", token]);
    await connected(good, serve);
    expect((await ping(3)).received).toBe(0);
    expect(await stopClient(good)).toMatch(/summary policy=\S+ decided=3 reply=0 consume=3/);
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
    expect(await stopClient(c)).toMatch(/summary policy=\S+ decided=4 reply=0 consume=4/);
    await s2.waitStats((x) => counter(x, "service.sessions") === 0, "no sessions");
    expect((await ping(2)).received).toBe(2);
  });

  it("per-source-rate-limit: a bucket of 3 with no refill answers exactly 3 requests per source", async (ctx) => {
    if (skipReason !== null) ctx.skip();
    const { serve, socket } = await start();
    // A second source address on the kernel side of the TUN.
    await ns.sh("ip addr add 198.18.0.3/24 dev icmpfwd0");
    // Positive control: both sources are answered while no client decides.
    expect((await ping(2)).received).toBe(2);
    expect((await ping(2, ["-I", "198.18.0.3"])).received).toBe(2);
    const c = client(socket, ["per-source-rate-limit", "--rate", "0", "--burst", "3"]);
    await connected(c, serve);
    const before = serve.stats();
    const a = await ping(6);
    expect(replySeqs(a.out)).toEqual([1, 2, 3]);
    const b = await ping(5, ["-I", "198.18.0.3"]);
    expect(replySeqs(b.out)).toEqual([1, 2, 3]);
    const delta = (s: Record<string, number>, k: string) => counter(s, k) - counter(before, k);
    const s = await serve.waitVerdicts(11, before);
    expect(delta(s, "service.outcomes.reply.verdict")).toBe(6);
    expect(delta(s, "service.outcomes.consume.verdict")).toBe(5);
    expect(delta(s, "icmp.v4.packetsSent.echoReply")).toBe(6);
    expect(await stopClient(c)).toMatch(
      /summary policy=\S+ decided=11 reply=6 consume=5 fallthrough=0/,
    );
  });

  it("proxy-latency with a fixed delay: every reply is synthetic and arrives after the delay", async (ctx) => {
    if (skipReason !== null) ctx.skip();
    const { serve, socket } = await start();
    const control = await ping(2);
    expect(control.received).toBe(2);
    // The built-in path answers under the delay (its fastest reply: a loaded machine may hold
    // one up), so the delay below is the policy's.
    expect(control.rttMinMs).toBeLessThan(200);
    const c = client(socket, ["proxy-latency", "--delay-ms", "200"]);
    await connected(c, serve);
    const before = serve.stats();
    const r = await ns.exec("ping", ["-n", "-c", "3", "-i", "0.3", "-W", "2", "198.18.0.2"]);
    const q = parsePing(r.stdout);
    expect(q.received).toBe(3);
    const rtts = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
    expect(rtts).toHaveLength(3);
    for (const t of rtts) expect(t).toBeGreaterThanOrEqual(200);
    const delta = (s: Record<string, number>, k: string) => counter(s, k) - counter(before, k);
    const s = await serve.waitStats(
      (x) => delta(x, "service.synthetic.sent") === 3,
      "3 synthetic replies",
    );
    expect(delta(s, "service.outcomes.consume.verdict")).toBe(3);
    expect(delta(s, "service.outcomes.reply.verdict")).toBe(0);
    expect(delta(s, "service.synthetic.recorded")).toBe(3);
    expect(await stopClient(c)).toMatch(
      /summary policy=\S+ decided=3 reply=0 consume=3 fallthrough=0 errors=0 observed=0 sessions=1$/m,
    );
  });

  it("proxy-latency --measure: the client host pings the original destination itself", async (ctx) => {
    if (skipReason !== null) ctx.skip();
    const { serve, socket } = await start();
    expect((await ping(2)).received).toBe(2);
    // Another "host" where 198.18.0.2 is local: its ping never enters icmpfwd's TUN.
    const upstream = await Netns.create("pyup");
    try {
      await upstream.sh("ip addr add 198.18.0.2/32 dev lo");
      const c = upstream.spawn(
        PYTHON,
        [
          "-m",
          "icmpfwd_client",
          "proxy-latency",
          "--measure",
          "--delay-ms",
          "1500",
          "--target",
          `unix:${socket}`,
        ],
        { ...process.env, PYTHONPATH: CLIENT_DIR, PYTHONUNBUFFERED: "1" },
      );
      clients.push(c);
      await connected(c, serve);
      const r = await ns.exec("ping", ["-n", "-c", "3", "-i", "0.3", "-W", "3", "198.18.0.2"]);
      const q = parsePing(r.stdout);
      expect(q.received).toBe(3);
      expect(q.rttAvgMs).toBeLessThan(500); // the measured RTT, not the 1500 ms fallback
      const s = await serve.waitStats(
        (x) => counter(x, "service.synthetic.sent") === 3,
        "3 synthetic replies",
      );
      expect(counter(s, "service.outcomes.consume.verdict")).toBe(3);
      expect(await upstream.nstat("IcmpInEchos")).toBe(1);
      expect(c.output().match(/measured rtt to 198\.18\.0\.2: /g)).toHaveLength(1);
      expect(await stopClient(c)).toMatch(
        /summary policy=\S+ decided=3 reply=0 consume=3 fallthrough=0 errors=0 observed=0 sessions=1 pings=1 shared=2 ping_failures=0 loops=0/,
      );
    } finally {
      await upstream.destroy();
    }
  });

  describe("over TLS", () => {
    let dir = "";
    const file = (n: string) => join(dir, n);

    beforeAll(() => {
      dir = tempDir("icmpfwd-pytls-");
      const sh = (cmd: string) => execFileSync("sh", ["-c", cmd], { cwd: dir, stdio: "pipe" });
      sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.pem 2>/dev/null",
      );
      // The service's certificate names 127.0.0.1; the client's is for mTLS.
      sh(
        `openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -out server.pem -extfile san.ext 2>/dev/null &&
        openssl req -newkey rsa:2048 -nodes -subj /CN=py-policy -keyout client.key -out client.csr 2>/dev/null &&
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -out client.pem 2>/dev/null`,
      );
    });

    const TARGET = "127.0.0.1:50051";
    function tlsClient(args: string[]): Spawned {
      const c = ns.spawn(PYTHON, ["-m", "icmpfwd_client", ...args, "--target", TARGET], {
        ...process.env,
        PYTHONPATH: CLIENT_DIR,
        PYTHONUNBUFFERED: "1",
      });
      clients.push(c);
      return c;
    }

    it("TLS: a client trusting the service's CA decides; one without the CA fails with a clear message", async (ctx) => {
      if (skipReason !== null) ctx.skip();
      serve = await startServe(ns, [
        "--listen",
        TARGET,
        "--tls-cert",
        file("server.pem"),
        "--tls-key",
        file("server.key"),
      ]);
      const s = serve;
      const untrusted = tlsClient(["drop-all", "--tls"]);
      const { code } = await untrusted.exited;
      expect(code, untrusted.output()).toBe(1);
      expect(untrusted.output()).toMatch(
        /"level":"error","msg":"TLS handshake with 127\.0\.0\.1:50051 failed \(check --tls-ca.*certificate verify failed/,
      );
      expect(counter(s.stats(), "service.sessions")).toBe(0);
      // Positive control for the drop below: no client, the service's default answers.
      expect((await ping(2)).received).toBe(2);
      const good = tlsClient(["drop-all", "--tls-ca", file("ca.pem")]);
      await connected(good, s);
      expect((await ping(3)).received).toBe(0);
      const st = await s.waitVerdicts(3);
      expect(counter(st, "service.outcomes.consume.verdict")).toBe(3);
      expect(await stopClient(good)).toMatch(/summary policy=\S+ decided=3 reply=0 consume=3/);
    });

    it("mTLS: with --tls-client-ca on the service, the client's certificate gets it through", async (ctx) => {
      if (skipReason !== null) ctx.skip();
      serve = await startServe(ns, [
        "--listen",
        TARGET,
        "--tls-cert",
        file("server.pem"),
        "--tls-key",
        file("server.key"),
        "--tls-client-ca",
        file("ca.pem"),
      ]);
      const s = serve;
      // Without a client certificate: refused in the handshake. gRPC reports that only as a
      // failed read, so the client keeps retrying (it may be a restart) and says what may be wrong.
      const anonymous = tlsClient(["drop-all", "--tls-ca", file("ca.pem")]);
      await waitFor(() => anonymous.output().includes("may require a client certificate"), {
        what: "the mTLS hint",
      });
      expect(anonymous.output()).toContain("alert certificate required");
      expect(counter(s.stats(), "service.sessions")).toBe(0);
      expect(await stopClient(anonymous)).toMatch(/summary policy=\S+ decided=0 .* sessions=0/);
      expect((await ping(2)).received).toBe(2);
      const good = tlsClient([
        "drop-all",
        "--tls-ca",
        file("ca.pem"),
        "--tls-cert",
        file("client.pem"),
        "--tls-key",
        file("client.key"),
      ]);
      await connected(good, s);
      expect((await ping(3)).received).toBe(0);
      const st = await s.waitVerdicts(3);
      expect(counter(st, "service.outcomes.consume.verdict")).toBe(3);
      expect(await stopClient(good)).toMatch(/summary policy=\S+ decided=3 reply=0 consume=3/);
    });
  });
});
