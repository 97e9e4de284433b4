/**
 * Traceroute through the tunnel: icmpfwd at the tunnel's entrance, the relay policy at its exit.
 * A routed chain of private namespaces (test/helpers/relay-chain.ts): the service's namespace
 * routes the destination prefixes into icmpfwd0 and runs traceroute and ping; the Go relay
 * (`icmpfwd-policy-go relay`) runs in the exit namespace, connected to the service over a veth
 * with a token, and sends each request on from there, past two routers, to the destination.
 * What comes back — the Echo Reply, a router's Time Exceeded or Destination Unreachable — goes
 * back through the service as a synthetic answer from the right address.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeNetns, exec, inCI, type Spawned, tempDir, waitFor } from "../helpers/netns.js";
import { buildChain, CHAIN, type Chain } from "../helpers/relay-chain.js";
import { type ServeProcess, startServe } from "../helpers/serve.js";

const GO_DIR = fileURLToPath(new URL("../../clients/go", import.meta.url));
const BUILD_TIMEOUT_MS = 240_000;
const TOKEN = "relay-test-token-0123456789";

function goMissing(): string | null {
  if (!existsSync("/usr/share/gocode/src/google.golang.org/grpc"))
    return "golang-google-grpc-dev is not installed";
  if (!existsSync("/usr/share/gocode/src/golang.org/x/net/icmp"))
    return "golang-golang-x-net-dev is not installed";
  return null;
}

/** The hops traceroute printed: the address on each numbered line (`*` when none answered). */
function hops(stdout: string): string[] {
  return stdout
    .split("\n")
    .map((l) => /^\s*\d+\s+(\S+)/.exec(l)?.[1])
    .filter((h): h is string => h !== undefined);
}

/**
 * Waits until `value` has not changed for a second: a probe of an earlier test that was still
 * being relayed (a late answer, a traceroute probe past the destination) must not land inside
 * the next test's counts.
 */
async function quiet(value: () => Promise<number> | number): Promise<void> {
  let last = await value();
  let since = Date.now();
  const deadline = Date.now() + 15_000;
  while (Date.now() - since < 1000) {
    if (Date.now() > deadline) throw new Error("the counters never went quiet");
    await new Promise((r) => setTimeout(r, 200));
    const v = await value();
    if (v !== last) {
      last = v;
      since = Date.now();
    }
  }
}

/** The smallest RTT (ms) ping printed. */
function minRtt(stdout: string): number {
  const rtts = [...stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  if (rtts.length === 0) throw new Error(`no RTT in:\n${stdout}`);
  return Math.min(...rtts);
}

describeNetns("traceroute through the tunnel: the relay at its exit", () => {
  let chain: Chain;
  let serve: ServeProcess;
  let relay: Spawned;
  const skip = goMissing();

  beforeAll(async () => {
    if (skip !== null) {
      if (inCI) throw new Error(skip);
      return;
    }
    const binary = join(tempDir("icmpfwd-gobin-"), "icmpfwd-policy-go");
    const built = await exec(
      join(GO_DIR, "go.sh"),
      ["build", "-o", binary, "./cmd/icmpfwd-policy-go"],
      { timeoutMs: BUILD_TIMEOUT_MS - 5_000 },
    );
    if (built.code !== 0) throw new Error(`building icmpfwd-policy-go failed: ${built.stderr}`);
    chain = await buildChain();
    // The errors come back from the routers' addresses, which the entrance's kernel does not
    // route into icmpfwd0: strict reverse-path filtering would drop them.
    await chain.svc.sh(
      "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0",
    );
    const routes = [...CHAIN.ipv4.routed, ...CHAIN.ipv6.routed].flatMap((r) => ["--route", r]);
    serve = await startServe(chain.svc, [
      "--listen",
      `${CHAIN.ipv4.serviceLink}:50051`,
      "--token",
      TOKEN,
      "--insecure-token",
      "--promiscuous",
      ...routes,
      "--deadline",
      "2000",
    ]);
    const allow = [...CHAIN.ipv4.allow, ...CHAIN.ipv6.allow].join(",");
    relay = chain.exit.spawn(binary, [
      "relay",
      "--target",
      `${CHAIN.ipv4.serviceLink}:50051`,
      "--token",
      TOKEN,
      "--allow",
      allow,
      "--rate",
      "50",
      "--burst",
      "50",
      "--max-in-flight",
      "256",
    ]);
    await serve.waitStats((x) => x["service.sessions"] === 1, "the relay's session", 15_000);
  }, BUILD_TIMEOUT_MS + 60_000);

  afterAll(async () => {
    if (relay !== undefined && relay.child.exitCode === null) relay.child.kill("SIGKILL");
    if (serve !== undefined) await serve.stop();
    await chain?.destroy();
  });

  for (const family of ["ipv4", "ipv6"] as const) {
    const a = CHAIN[family];
    const v6 = family === "ipv6" ? ["-6"] : [];

    it(`${family}: traceroute -I prints the two routers and the destination, in order`, async (ctx) => {
      if (skip !== null) ctx.skip();
      const r = await chain.svc.exec(
        "traceroute",
        [...v6, "-I", "-n", "-N", "1", "-q", "1", "-w", "3", "-m", "6", a.destination],
        { timeoutMs: 60_000 },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(hops(r.stdout), r.stdout).toEqual([a.r1, a.r2, a.destination]);
    });

    it(`${family}: ping is answered after the real round trip, the destination counting exactly the relay's requests, one outcome each`, async (ctx) => {
      if (skip !== null) ctx.skip();
      const echoIn = family === "ipv4" ? "IcmpInEchos" : "Icmp6InEchos";
      await quiet(() => serve.stats()["service.requests"] ?? 0);
      await quiet(() => chain.dst.nstat(echoIn));
      const dstBefore = await chain.dst.nstat(echoIn);
      const before = serve.stats();
      const delta = (x: Record<string, number>, k: string): number =>
        (x[k] ?? 0) - (before[k] ?? 0);
      const viaRelay = await chain.svc.ping([
        ...v6,
        "-n",
        "-c",
        "5",
        "-i",
        "0.2",
        "-W",
        "3",
        a.destination,
      ]);
      expect(viaRelay.received).toBe(5);
      const s = await serve.waitStats(
        (x) => delta(x, "service.synthetic.sent") >= 5,
        "five synthetic replies",
      );
      expect(delta(s, "service.requests")).toBe(5);
      expect(delta(s, "service.outcomes.consume.verdict")).toBe(5);
      expect((await chain.dst.nstat(echoIn)) - dstBefore).toBe(5);
      // The exit's own ping to the destination: the relay's answers cannot beat it.
      const direct = await chain.exit.ping([...v6, "-n", "-c", "5", "-i", "0.2", a.destination]);
      expect(direct.received).toBe(5);
      expect(minRtt(viaRelay.stdout)).toBeGreaterThanOrEqual(minRtt(direct.stdout));
    });

    it(`${family}: a destination behind a router with no route gets Destination Net Unreachable from that router`, async (ctx) => {
      if (skip !== null) ctx.skip();
      await quiet(() => serve.stats()["service.requests"] ?? 0);
      const before = serve.stats();
      const r = await chain.svc.exec("ping", [...v6, "-n", "-c", "1", "-W", "3", a.unroutable]);
      const reason =
        family === "ipv4" ? "Destination Net Unreachable" : "Destination unreachable: No route";
      expect(r.stdout, `${r.code} ${r.stderr}\n${relay.output()}`).toContain(
        `From ${a.r2} icmp_seq=1 ${reason}`,
      );
      const s = await serve.waitStats(
        (x) =>
          (x["service.synthetic.errors.netUnreachable"] ?? 0) -
            (before["service.synthetic.errors.netUnreachable"] ?? 0) ===
          1,
        "one Net Unreachable",
      );
      expect(s["service.requests"] - before["service.requests"]).toBe(1);
    });

    it(`${family}: a destination outside --allow is not relayed; it falls through to the netstack`, async (ctx) => {
      if (skip !== null) ctx.skip();
      const echoOut = family === "ipv4" ? "IcmpOutEchos" : "Icmp6OutEchos";
      const exitBefore = await chain.exit.nstat(echoOut);
      const before = serve.stats();
      await chain.svc.exec("ping", [...v6, "-n", "-c", "1", "-W", "2", a.notAllowed]);
      const s = await serve.waitStats(
        (x) =>
          (x["service.outcomes.fallthrough.verdict"] ?? 0) -
            (before["service.outcomes.fallthrough.verdict"] ?? 0) ===
          1,
        "one fallthrough",
      );
      expect(s["service.requests"] - before["service.requests"]).toBe(1);
      expect((await chain.exit.nstat(echoOut)) - exitBefore).toBe(0);
    });
  }

  it("the relay stops cleanly and its summary counts what it relayed", async (ctx) => {
    if (skip !== null) ctx.skip();
    relay.child.kill("SIGTERM");
    const { code } = await relay.exited;
    expect(code, relay.output()).toBe(0);
    const summary = /summary policy=relay .*/.exec(relay.output())?.[0] ?? "";
    // Per family: 6 traceroute probes, 5 pings, 1 unroutable relayed; 1 refused (outside --allow).
    expect(summary).toMatch(/ relayed=18 /);
    expect(summary).toMatch(/ relay_refused=2$/);
    await waitFor(() => serve.stats()["service.sessions"] === 0, { what: "the session closed" });
  });
}, ["traceroute"]);
