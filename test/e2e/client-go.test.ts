/**
 * The Go policy client (clients/go) end to end: `icmpfwd serve` in a private namespace (TUN,
 * kernel ping) on a unix socket, and the `icmpfwd-policy-go` example binary (built once, in GOPATH
 * mode over Debian's /usr/share/gocode, by clients/go/go.sh) run in the same namespace against
 * that socket. Every "no reply" result has a positive control.
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
  type Spawned,
  tempDir,
  waitFor,
} from "../helpers/netns.js";
import { type ServeProcess, startServe } from "../helpers/serve.js";

const GO_DIR = fileURLToPath(new URL("../../clients/go", import.meta.url));
const RECEIVER = fileURLToPath(new URL("./fixtures/otlp-receiver.mjs", import.meta.url));
const OTLP_PORT = 4318;
/** A cold build cache compiles grpc and protobuf first. */
const BUILD_TIMEOUT_MS = 240_000;

/** Whether Debian's Go toolchain and libraries are there (the unit test names each package). */
async function goReady(): Promise<string | null> {
  const r = await exec("sh", ["-c", "command -v go"]);
  if (r.code !== 0) return "go is not installed (golang-go)";
  if (!existsSync("/usr/share/gocode/src/google.golang.org/grpc"))
    return "golang-google-grpc-dev is not installed";
  if (!existsSync("/usr/share/gocode/src/github.com/golang/protobuf/proto/wire.go"))
    return "golang-github-golang-protobuf-1-5-dev is not installed";
  return null;
}

describeNetns("the Go policy client end to end", () => {
  let ns: Netns;
  let serve: ServeProcess | null = null;
  let clients: Spawned[] = [];
  let skipReason: string | null = null;
  let binary = "";

  beforeAll(async () => {
    skipReason = await goReady();
    if (skipReason !== null && inCI) throw new Error(skipReason);
    if (skipReason === null) {
      binary = join(tempDir("icmpfwd-gobin-"), "icmpfwd-policy-go");
      const r = await exec(
        join(GO_DIR, "go.sh"),
        ["build", "-o", binary, "./cmd/icmpfwd-policy-go"],
        { timeoutMs: BUILD_TIMEOUT_MS - 5_000 },
      );
      if (r.code !== 0) throw new Error(`building icmpfwd-policy-go failed: ${r.stderr}`);
    }
    ns = await Netns.create("gocl");
  }, BUILD_TIMEOUT_MS);

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

  /**
   * A 2 s decision deadline (default 100 ms): on a loaded 2-core CI machine a late verdict
   * would become the fallthrough default, i.e. a reply, and fail a "nothing answered" check.
   */
  const DEADLINE = ["--deadline", "2000"];

  async function start(
    args: string[] = [],
    env?: NodeJS.ProcessEnv,
  ): Promise<{ serve: ServeProcess; socket: string }> {
    const socket = join(tempDir("icmpfwd-gosock-"), "s.sock");
    serve = await startServe(ns, ["--listen", `unix:${socket}`, ...DEADLINE, ...args], env);
    return { serve, socket };
  }

  /** Starts the binary in the namespace (by its absolute path: `ip netns exec` resets PATH). */
  function client(socket: string, args: string[]): Spawned {
    const env = { ...process.env };
    delete env.ICMPFWD_TOKEN;
    delete env.ICMPFWD_TARGET;
    const c = ns.spawn(binary, [...args, "--target", `unix:${socket}`], env);
    clients.push(c);
    return c;
  }

  async function connected(c: Spawned, s: ServeProcess): Promise<void> {
    await waitFor(() => c.output().includes("welcome: session=") || c.child.exitCode !== null, {
      what: "the Go client's Welcome",
      timeoutMs: 15_000,
    });
    if (c.child.exitCode !== null) throw new Error(`the Go client exited: ${c.output()}`);
    await s.waitStats((x) => counter(x, "service.sessions") === 1, "one session");
  }

  async function ping(count: number): Promise<{ out: string; received: number; seqs: number[] }> {
    const r = await ns.ping(["-n", "-c", String(count), "-i", "0.05", "-W", "2", "198.18.0.2"], {
      timeoutMs: 30_000,
    });
    expect(r.transmitted).toBe(count);
    return { out: r.stdout, received: r.received, seqs: r.seqs };
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
    const c = client(socket, ["even-reply", "-v"]);
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
    expect(out).toMatch(/summary policy=\S+ decided=20 reply=10 consume=10 fallthrough=0 errors=0/);
    // -v: one log line per verdict, naming the request.
    expect(
      out.match(/verdict reply: request=\d+ 198\.18\.0\.1 > 198\.18\.0\.2 .*seq=\d*[02468]\b/g),
    ).toHaveLength(10);
    expect(out.match(/verdict consume: request=\d+ .*seq=\d*[13579]\b/g)).toHaveLength(10);
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

  it("with --token: the client with the token decides, one without fails with a clear message", async (ctx) => {
    if (skipReason !== null) ctx.skip();
    const token = "go-client-token-0123456789";
    const { serve, socket } = await start(["--token", token]);
    const bad = client(socket, ["drop-all"]);
    const { code } = await bad.exited;
    expect(code, bad.output()).toBe(2);
    expect(bad.output()).toMatch(/authentication failed \(check the token\): UNAUTHENTICATED/);
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
    serve = await startServe(ns, ["--listen", `unix:${first.socket}`, ...DEADLINE]);
    const s2 = serve;
    await waitFor(() => (c.output().match(/welcome: session=/g) ?? []).length >= 2, {
      what: "a second Welcome",
      timeoutMs: 15_000,
    });
    expect(c.output()).toMatch(/disconnected from unix:.*; reconnecting in/);
    await s2.waitStats((x) => counter(x, "service.sessions") === 1, "one session again");
    expect((await ping(2)).received).toBe(0);
    // Positive control: once the client is gone, the service's default replies.
    expect(await stopClient(c)).toMatch(
      /summary policy=\S+ decided=4 reply=0 consume=4 .*sessions=2/,
    );
    await s2.waitStats((x) => counter(x, "service.sessions") === 0, "no sessions");
    expect((await ping(2)).received).toBe(2);
  });
  it("with tracing on, its verdict log line carries the trace id of the request's span", async (ctx) => {
    if (skipReason !== null) ctx.skip();
    // The service exports OTLP/HTTP to a receiver in the namespace; the span of the request the
    // client logged must have the trace id the client logged.
    const receiver = ns.spawnNode(RECEIVER, [String(OTLP_PORT)]);
    clients.push(receiver);
    await waitFor(() => receiver.output().includes("listening"), { what: "the OTLP receiver" });
    const { serve, socket } = await start(["--metrics-listen", "off"], {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${OTLP_PORT}`,
      OTEL_BSP_SCHEDULE_DELAY: "100",
      OTEL_SERVICE_NAME: "icmpfwd-e2e-go",
      OTEL_METRICS_EXPORTER: "none",
    });
    const c = client(socket, ["reply-all", "-v"]);
    await connected(c, serve);
    expect((await ping(1)).received).toBe(1);
    const logged = await waitFor(
      () => /verdict reply: request=\d+ .* seq=1 trace_id=([0-9a-f]{32})"/m.exec(c.output())?.[1],
      { what: "the Go client's verdict line with a trace id" },
    );
    const span = await waitFor(
      () =>
        receiver
          .output()
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .map(
            (l) =>
              JSON.parse(l) as {
                name: string;
                traceId: string;
                attributes: Record<string, unknown>;
              },
          )
          .find((x) => x.name === "icmpfwd.echo_request" && x.traceId === logged),
      { what: "the request span with the logged trace id", timeoutMs: 10_000 },
    );
    expect(span.attributes["icmpfwd.verdict"]).toBe("reply");
    expect(span.attributes["icmp.sequence"]).toBe(1);
    expect(await stopClient(c)).toMatch(/summary policy=\S+ decided=1 reply=1/);
    // Stopped here, while the receiver still runs: a service whose exporter has lost its
    // receiver takes seconds to shut down.
    await serve.stop();
  });
});
