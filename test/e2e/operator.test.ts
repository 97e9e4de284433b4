/**
 * Operating a running service, end to end in a private namespace: SIGHUP reloads the config
 * file under load (new sessions see the new deadline and token, the existing session keeps
 * deciding, every request gets one outcome); an invalid reload is refused with the reason and
 * the old configuration kept; `icmpfwd addr|route|promiscuous` change what the next ping sees,
 * kernel routes included.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import type { Duration } from "../../src/gen/google/protobuf/duration.js";
import type { Timestamp } from "../../src/gen/google/protobuf/timestamp.js";
import { Action } from "../../src/gen/icmpfwd/v1/forwarder.js";
import { describeNetns, Netns, parsePing, tempDir, waitFor } from "../helpers/netns.js";
import { MAIN_JS, type ServeProcess, startServe } from "../helpers/serve.js";
import { TestClient } from "../integration/service/harness.js";

const TOKEN_A = "token-a-0123456789abcdef";
const TOKEN_B = "token-b-0123456789abcdef";
const LOAD = 400;

const msOf = (t: Duration | Timestamp | undefined): number =>
  t === undefined ? Number.NaN : Number(t.seconds) * 1000 + t.nanos / 1e6;

/** Answers every request REPLY as it arrives. */
function replyAll(c: TestClient): void {
  let seen = 0;
  c.call.on("data", () => {
    const fresh = c.events.slice(seen);
    seen = c.events.length;
    if (fresh.length > 0) c.decide(fresh, Action.ACTION_REPLY);
  });
}

describeNetns("operating a running service", () => {
  let ns: Netns;
  let serve: ServeProcess | null = null;
  const clients: TestClient[] = [];
  let target: string;
  let configFile: string;

  const writeConfig = (c: Record<string, unknown> | string): void =>
    writeFileSync(configFile, typeof c === "string" ? c : JSON.stringify(c));
  const icmpfwd = (...args: string[]) =>
    ns.exec(process.execPath, [MAIN_JS, ...args, "--target", target]);
  const ping = async (dst: string, count = 2, v6 = false): Promise<number> => {
    const r = await ns.ping(
      [...(v6 ? ["-6"] : []), "-n", "-q", "-c", String(count), "-i", "0.2", "-W", "2", dst],
      { timeoutMs: 10_000 },
    );
    return r.received;
  };
  const kernelRoute = async (prefix: string): Promise<string> =>
    (await ns.exec("ip", ["route", "show", prefix])).stdout.trim();

  async function start(args: string[] = []): Promise<ServeProcess> {
    target = `unix:${join(tempDir("icmpfwd-op-"), "icmpfwd.sock")}`;
    serve = await startServe(ns, ["--listen", target, "--metrics-listen", "off", ...args]);
    return serve;
  }

  async function connect(name: string, token?: string): Promise<TestClient> {
    const c = await TestClient.connect(target, { clientName: name }, { token });
    clients.push(c);
    return c;
  }

  beforeAll(async () => {
    ns = await Netns.create("oper");
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    if (serve !== null) expect((await serve.stop()).code).toBe(0);
    serve = null;
  });

  afterAll(async () => {
    await ns?.destroy();
  });

  it("SIGHUP under load: a new deadline and token reach new sessions, the existing session keeps deciding, every request gets one outcome", async () => {
    configFile = join(tempDir("icmpfwd-op-"), "config.json");
    writeConfig({ deadline: 100, token: TOKEN_A });
    const s = await start(["--config", configFile]);
    const first = await connect("first", TOKEN_A);
    expect(msOf(first.welcome?.deadline)).toBe(100);
    replyAll(first);

    const load = ns.exec(
      "ping",
      ["-n", "-q", "-c", String(LOAD), "-i", "0.005", "-W", "2", "198.18.0.2"],
      { timeoutMs: 30_000 },
    );
    await first.waitEvents(50);
    writeConfig({ deadline: 250, token: TOKEN_B });
    s.proc.child.kill("SIGHUP");
    const logLine = await waitFor(
      () =>
        s.proc
          .output()
          .split("\n")
          .find((l) => l.includes('"msg":"configuration reloaded"')),
      { what: "the reload log line", timeoutMs: 5000 },
    );
    expect(JSON.parse(logLine).changes).toEqual([
      { key: "deadline", from: 100, to: 250, contentsChanged: false },
      { key: "token", from: "(redacted)", to: "(redacted)", contentsChanged: false },
    ]);
    const atReload = first.events.length;

    // The old token no longer opens a session; the new one does, with the new deadline.
    const refused = new TestClient(target, { token: TOKEN_A });
    clients.push(refused);
    refused.hello();
    expect((await refused.waitStatus()).code).toBe(16); // UNAUTHENTICATED
    const second = await connect("second", TOKEN_B);
    expect(msOf(second.welcome?.deadline)).toBe(250);
    replyAll(second);

    const r = await load;
    expect(parsePing(r.stdout).received).toBe(LOAD);
    // The first session kept deciding after the reload, its new requests under the new deadline.
    expect(first.events.length).toBeGreaterThan(atReload);
    const before = first.events[0];
    const after = first.events[first.events.length - 1];
    expect(msOf(before.deadline) - msOf(before.receivedAt)).toBe(100);
    expect(msOf(after.deadline) - msOf(after.receivedAt)).toBe(250);

    const stats = await s.waitStats(
      (x) => x["service.requests"] === LOAD && x["service.inFlight"] === 0,
      `${LOAD} requests, none in flight`,
    );
    let outcomes = 0;
    for (const [k, v] of Object.entries(stats))
      if (k.startsWith("service.outcomes.")) outcomes += v;
    expect(outcomes).toBe(LOAD);
    expect(stats["icmp.v4.packetsReceived.echoRequest"]).toBe(LOAD);
    expect(stats["service.outcomes.fallthrough.disconnect"]).toBe(0);
  });

  it("an invalid reload is refused with the reason, and the running configuration is kept", async () => {
    configFile = join(tempDir("icmpfwd-op-"), "config.json");
    writeConfig({ deadline: 100 });
    const s = await start(["--config", configFile]);

    writeConfig({ deadline: 0 });
    const invalid = await icmpfwd("reload");
    expect(invalid.code).toBe(1);
    expect(invalid.stderr.trim()).toBe(
      `icmpfwd: ${target}: INVALID_ARGUMENT: invalid configuration: deadline (--deadline, ICMPFWD_DEADLINE): Number must be greater than or equal to 1`,
    );

    writeConfig({ deadline: 100, mtu: 9000 });
    const restart = await icmpfwd("reload");
    expect(restart.code).toBe(1);
    expect(restart.stderr.trim()).toBe(
      `icmpfwd: ${target}: FAILED_PRECONDITION: mtu: changed from 1500 to 9000, which only a restart applies`,
    );

    writeConfig("{ not json");
    s.proc.child.kill("SIGHUP");
    await waitFor(
      () =>
        s.proc
          .output()
          .split("\n")
          .filter((l) => l.includes('"msg":"configuration reload refused"')).length === 3,
      { what: "three refusals in the log", timeoutMs: 5000 },
    );
    expect(s.proc.output()).toContain("is not valid JSON");
    expect(s.proc.output()).not.toContain('"msg":"configuration reloaded"');
    const c = await connect("after");
    expect(msOf(c.welcome?.deadline)).toBe(100);
  });

  it("addr add and addr del take effect for the next ping, kernel route included", async () => {
    await start();
    expect(await kernelRoute("198.18.5.0/24")).toBe("");
    const add = await icmpfwd("addr", "add", "198.18.5.2/24");
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout).toMatch(/^198\.18\.5\.0\/24\s+1\s+added by icmpfwd$/m);
    expect(await kernelRoute("198.18.5.0/24")).toBe("198.18.5.0/24 dev icmpfwd0 scope link");
    expect(await ping("198.18.5.2")).toBe(2);

    expect((await icmpfwd("addr", "add", "fd00:5::2/64")).code).toBe(0);
    expect(await ping("fd00:5::2", 2, true)).toBe(2);

    const del = await icmpfwd("addr", "del", "198.18.5.2");
    expect(del.code, del.stderr).toBe(0);
    expect(await kernelRoute("198.18.5.0/24")).toBe("");
    expect(await ping("198.18.5.2", 1)).toBe(0);

    const again = await icmpfwd("addr", "del", "198.18.5.2");
    expect(again.stderr.trim()).toBe(
      `icmpfwd: ${target}: NOT_FOUND: address: 198.18.5.2 is not an address of NIC 1`,
    );
  });

  it("route add with promiscuous on answers a routed prefix; promiscuous off and route del stop it", async () => {
    const s = await start(["--temporary-reply"]);
    expect((await icmpfwd("route", "add", "198.18.9.0/24")).code).toBe(0);
    expect(await kernelRoute("198.18.9.0/24")).toBe("198.18.9.0/24 dev icmpfwd0 scope link");
    const dropped = s.stats()["ipv4.invalidDestinationAddressesReceived"] ?? 0;
    expect(await ping("198.18.9.7", 1)).toBe(0);
    await s.waitStats(
      (x) => x["ipv4.invalidDestinationAddressesReceived"] === dropped + 1,
      "the Echo Request dropped as not ours",
    );

    const on = await icmpfwd("promiscuous", "on", "--json");
    expect(JSON.parse(on.stdout).nics[0].promiscuous).toBe(true);
    expect(await ping("198.18.9.7")).toBe(2);

    expect((await icmpfwd("promiscuous", "off")).code).toBe(0);
    expect(await ping("198.18.9.7", 1)).toBe(0);

    expect((await icmpfwd("route", "del", "198.18.9.0/24")).code).toBe(0);
    expect(await kernelRoute("198.18.9.0/24")).toBe("");
    const onLink = await icmpfwd("route", "del", "198.18.0.0/24");
    expect(onLink.stderr.trim()).toBe(
      `icmpfwd: ${target}: FAILED_PRECONDITION: destination: 198.18.0.0/24 is the on-link route of address 198.18.0.2/24: remove the address instead`,
    );
  });
});
