/**
 * Traceroute through the tunnel: icmpfwd at the tunnel's entrance, the relay policy at its exit.
 * A routed chain of private namespaces (test/helpers/relay-chain.ts): the service's namespace
 * routes the destination prefixes into icmpfwd0 and runs traceroute, mtr and ping; the relay —
 * Go (`icmpfwd-policy-go relay`) and TypeScript (`icmpfwd-policy relay`), the same cases for
 * each — runs in the exit namespace, connected to the service over a veth with a token, and
 * sends each request on from there, past two routers, to the destination. What comes back — the
 * Echo Reply, a router's Time Exceeded or Destination Unreachable — goes back through the
 * service as a synthetic answer from the right address. The TypeScript relay also runs without
 * privileges (nobody, no CAP_NET_RAW): datagram ping sockets, the routers' errors read from
 * their error queue.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeNetns, exec, inCI, type Spawned, tempDir, waitFor } from "../helpers/netns.js";
import { buildChain, CHAIN, type Chain } from "../helpers/relay-chain.js";
import { type ServeProcess, startServe } from "../helpers/serve.js";

const GO_DIR = fileURLToPath(new URL("../../clients/go", import.meta.url));
const TS_CLI = fileURLToPath(new URL("../../clients/ts/dist/cli.js", import.meta.url));
const TS_ADDON = fileURLToPath(
  new URL("../../clients/ts/native/build/Release/icmpfwd_icmp.node", import.meta.url),
);
const BUILD_TIMEOUT_MS = 240_000;
const TOKEN = "relay-test-token-0123456789";
/** The unprivileged relay's user and group (setpriv), allowed ping sockets in its namespace. */
const NOBODY = "65534";

type Language = "go" | "ts";

function goMissing(): string | null {
  if (!existsSync("/usr/share/gocode/src/google.golang.org/grpc"))
    return "golang-google-grpc-dev is not installed";
  if (!existsSync("/usr/share/gocode/src/golang.org/x/net/icmp"))
    return "golang-golang-x-net-dev is not installed";
  return null;
}

function tsMissing(): string | null {
  if (!existsSync(TS_CLI)) return `${TS_CLI} is missing: run npm run build first`;
  if (!existsSync(TS_ADDON))
    return "the client's ICMP addon is not built (npm rebuild @icmpfwd/client)";
  return null;
}

let goBinary: Promise<string> | undefined;
/** Builds icmpfwd-policy-go once for the file. */
function buildGo(): Promise<string> {
  goBinary ??= (async () => {
    const binary = join(tempDir("icmpfwd-gobin-"), "icmpfwd-policy-go");
    const built = await exec(
      join(GO_DIR, "go.sh"),
      ["build", "-o", binary, "./cmd/icmpfwd-policy-go"],
      { timeoutMs: BUILD_TIMEOUT_MS - 5_000 },
    );
    if (built.code !== 0) throw new Error(`building icmpfwd-policy-go failed: ${built.stderr}`);
    return binary;
  })();
  return goBinary;
}

/** The relay's command line: its CLI and the flags every case here uses. */
async function relayCommand(language: Language, extra: readonly string[]): Promise<string[]> {
  const allow = [...CHAIN.ipv4.allow, ...CHAIN.ipv6.allow].join(",");
  const flags = [
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
    ...extra,
  ];
  return language === "go" ? [await buildGo(), ...flags] : [process.execPath, TS_CLI, ...flags];
}

interface Tunnel {
  chain: Chain;
  serve: ServeProcess;
  relay: Spawned;
}

/**
 * The chain, the service at its entrance and the relay at its exit, connected; `asNobody` runs
 * the relay as nobody (no capabilities), the exit's ping sockets opened to nobody's group.
 */
async function startTunnel(language: Language, o: { asNobody?: boolean } = {}): Promise<Tunnel> {
  const command = await relayCommand(language, []);
  const chain = await buildChain();
  try {
    // The errors come back from the routers' addresses, which the entrance's kernel does not
    // route into icmpfwd0: strict reverse-path filtering would drop them.
    await chain.svc.sh(
      "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0",
    );
    const routes = [...CHAIN.ipv4.routed, ...CHAIN.ipv6.routed].flatMap((r) => ["--route", r]);
    const serve = await startServe(chain.svc, [
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
    let relay: Spawned;
    if (o.asNobody === true) {
      // Per namespace: the exit's ping sockets (IPv4 and IPv6) for nobody's group only.
      await chain.exit.sh(`sysctl -qw net.ipv4.ping_group_range="${NOBODY} ${NOBODY}"`);
      relay = chain.exit.spawn("setpriv", [
        "--reuid",
        NOBODY,
        "--regid",
        NOBODY,
        "--clear-groups",
        ...command,
      ]);
    } else {
      relay = chain.exit.spawn(command[0], command.slice(1));
    }
    await serve.waitStats((x) => x["service.sessions"] === 1, "the relay's session", 15_000);
    return { chain, serve, relay };
  } catch (e) {
    await chain.destroy();
    throw e;
  }
}

async function stopTunnel(t: Tunnel | undefined): Promise<void> {
  if (t === undefined) return;
  if (t.relay.child.exitCode === null) t.relay.child.kill("SIGKILL");
  await t.serve.stop();
  await t.chain.destroy();
}

/** traceroute's flags here: ICMP Echo, numeric, one probe at a time, at most 6 hops. */
const TRACEROUTE = ["-I", "-n", "-N", "1", "-q", "1", "-w", "3", "-m", "6"];
const PING = ["-n", "-c", "5", "-i", "0.2", "-W", "3"];

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

/** The hops mtr's report printed (`  1.|-- 198.18.21.2  0.0% …`), in order. */
function mtrHops(stdout: string): string[] {
  return stdout
    .split("\n")
    .map((l) => /^\s*\d+\.\|--\s+(\S+)/.exec(l)?.[1])
    .filter((h): h is string => h !== undefined);
}

/** The smallest RTT (ms) ping printed. */
function minRtt(stdout: string): number {
  const rtts = [...stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  if (rtts.length === 0) throw new Error(`no RTT in:\n${stdout}`);
  return Math.min(...rtts);
}

describeNetns("traceroute through the tunnel: the relay at its exit", () => {
  describe.each(["go", "ts"] as const)("the %s relay", (language) => {
    let t: Tunnel | undefined;
    const skip = language === "go" ? goMissing() : tsMissing();

    beforeAll(async () => {
      if (skip !== null) {
        if (inCI) throw new Error(skip);
        return;
      }
      t = await startTunnel(language);
    }, BUILD_TIMEOUT_MS + 60_000);

    afterAll(() => stopTunnel(t));

    for (const family of ["ipv4", "ipv6"] as const) {
      const a = CHAIN[family];
      const v6 = family === "ipv6" ? ["-6"] : [];

      it(`${family}: traceroute -I prints the two routers and the destination, in order`, async (ctx) => {
        if (t === undefined) return ctx.skip();
        const r = await t.chain.svc.exec("traceroute", [...v6, ...TRACEROUTE, a.destination], {
          timeoutMs: 60_000,
        });
        expect(r.code, r.stderr).toBe(0);
        expect(hops(r.stdout), r.stdout).toEqual([a.r1, a.r2, a.destination]);
      });

      it(`${family}: ping is answered after the real round trip, the destination counting exactly the relay's requests, one outcome each`, async (ctx) => {
        if (t === undefined) return ctx.skip();
        const { chain, serve } = t;
        const echoIn = family === "ipv4" ? "IcmpInEchos" : "Icmp6InEchos";
        await quiet(() => serve.stats()["service.requests"] ?? 0);
        await quiet(() => chain.dst.nstat(echoIn));
        const dstBefore = await chain.dst.nstat(echoIn);
        const before = serve.stats();
        const delta = (x: Record<string, number>, k: string): number =>
          (x[k] ?? 0) - (before[k] ?? 0);
        const viaRelay = await chain.svc.ping([...v6, ...PING, a.destination]);
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
        if (t === undefined) return ctx.skip();
        const { chain, serve, relay } = t;
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
        if (t === undefined) return ctx.skip();
        const { chain, serve } = t;
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
      if (t === undefined) return ctx.skip();
      const { serve, relay } = t;
      relay.child.kill("SIGTERM");
      const { code } = await relay.exited;
      expect(code, relay.output()).toBe(0);
      const summary = /summary policy=relay .*/.exec(relay.output())?.[0] ?? "";
      // Per family: 6 traceroute probes, 5 pings, 1 unroutable relayed; 1 refused (outside --allow).
      expect(summary).toMatch(/ relayed=18 /);
      expect(summary).toMatch(/ relay_refused=2$/);
      await waitFor(() => serve.stats()["service.sessions"] === 0, { what: "the session closed" });
    });
  });

  describe("the ts relay without privileges (nobody: datagram ping sockets, errors from their error queue)", () => {
    let t: Tunnel | undefined;
    const skip = tsMissing();

    beforeAll(async () => {
      if (skip !== null) {
        if (inCI) throw new Error(skip);
        return;
      }
      t = await startTunnel("ts", { asNobody: true });
    }, 60_000);

    afterAll(() => stopTunnel(t));

    it("without CAP_NET_RAW it says it falls back to datagram ping sockets", (ctx) => {
      if (t === undefined) return ctx.skip();
      expect(t.relay.output()).toContain("relaying with datagram ping sockets");
    });

    for (const family of ["ipv4", "ipv6"] as const) {
      const a = CHAIN[family];
      const v6 = family === "ipv6" ? ["-6"] : [];

      it(`${family}: ping is answered, one relayed request each`, async (ctx) => {
        if (t === undefined) return ctx.skip();
        const { chain, serve } = t;
        const echoIn = family === "ipv4" ? "IcmpInEchos" : "Icmp6InEchos";
        await quiet(() => chain.dst.nstat(echoIn));
        const dstBefore = await chain.dst.nstat(echoIn);
        const before = serve.stats();
        const r = await chain.svc.ping([...v6, ...PING, a.destination]);
        expect(r.received, `${r.stdout}\n${t.relay.output()}`).toBe(5);
        const s = await serve.waitStats(
          (x) => x["service.synthetic.sent"] - (before["service.synthetic.sent"] ?? 0) >= 5,
          "five synthetic replies",
        );
        expect(s["service.requests"] - before["service.requests"]).toBe(5);
        expect((await chain.dst.nstat(echoIn)) - dstBefore).toBe(5);
      });

      it(`${family}: traceroute -I prints the two routers (their errors from the error queue) and the destination`, async (ctx) => {
        if (t === undefined) return ctx.skip();
        const before = t.serve.stats();
        const r = await t.chain.svc.exec("traceroute", [...v6, ...TRACEROUTE, a.destination], {
          timeoutMs: 60_000,
        });
        expect(r.code, r.stderr).toBe(0);
        expect(hops(r.stdout), `${r.stdout}\n${t.relay.output()}`).toEqual([
          a.r1,
          a.r2,
          a.destination,
        ]);
        const s = await t.serve.waitStats(
          (x) =>
            x["service.synthetic.errors.timeExceeded"] -
              (before["service.synthetic.errors.timeExceeded"] ?? 0) ===
            2,
          "two Time Exceeded",
        );
        expect(s["service.synthetic.errors.timeExceeded"]).toBeGreaterThan(0);
      });
    }
  });

  describe("mtr through the ts relay", () => {
    let t: Tunnel | undefined;
    const skip = tsMissing();

    beforeAll(async () => {
      if (skip !== null) {
        if (inCI) throw new Error(skip);
        return;
      }
      t = await startTunnel("ts");
    }, 60_000);

    afterAll(() => stopTunnel(t));

    for (const family of ["ipv4", "ipv6"] as const) {
      const a = CHAIN[family];
      const v6 = family === "ipv6" ? ["-6"] : [];

      it(`${family}: mtr's report (ICMP Echo, its default) lists the two routers and the destination as its hops`, async (ctx) => {
        if (t === undefined) return ctx.skip();
        const r = await t.chain.svc.exec(
          "mtr",
          [...v6, "-n", "-r", "-c", "2", "-i", "0.2", a.destination],
          { timeoutMs: 60_000 },
        );
        expect(r.code, r.stderr).toBe(0);
        expect(mtrHops(r.stdout), r.stdout).toEqual([a.r1, a.r2, a.destination]);
      });
    }
  });
}, ["traceroute", "mtr", "setpriv"]);
