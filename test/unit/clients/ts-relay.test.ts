/**
 * The TypeScript relay policy's parts (clients/ts/src/relay): the Echo bytes it sends and reads,
 * the probe table, the allow list, and the relay and its policy against a fake socket addon;
 * the library's synthetic errors and awaited answers against a scripted service.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  connect,
  type LogLevel,
  type PolicyClient,
  syntheticError,
  toPolicyRequest,
} from "../../../clients/ts/src/index.js";
import { AllowList } from "../../../clients/ts/src/relay/allow-list.js";
import type {
  IcmpAddon,
  IcmpMessageCallback,
  IcmpSocket,
} from "../../../clients/ts/src/relay/icmp-socket.js";
import {
  checksum,
  echoRequest,
  errorOf,
  parseMessage,
  parseQueuedError,
  quotedEcho,
  stripIpv4Header,
} from "../../../clients/ts/src/relay/packets.js";
import { relayPolicy, relaySummary } from "../../../clients/ts/src/relay/policy.js";
import { ProbeTable } from "../../../clients/ts/src/relay/probe-table.js";
import { Relay } from "../../../clients/ts/src/relay/relay.js";
import { SyntheticErrorType } from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { waitFor } from "../../helpers/netns.js";
import { FakeService, echoRequest as request } from "./ts-fake-service.js";

/** An IPv4 header (20 bytes) of protocol ICMP, then `body`. */
function ipv4(body: Uint8Array): Uint8Array {
  const b = new Uint8Array(20 + body.length);
  b[0] = 0x45;
  b[9] = 1;
  b.set(body, 20);
  return b;
}

/** An IPv6 header with `next`, then `body`. */
function ipv6(next: number, body: Uint8Array): Uint8Array {
  const b = new Uint8Array(40 + body.length);
  b[0] = 0x60;
  b[6] = next;
  b.set(body, 40);
  return b;
}

/** An ICMP error of this type and code quoting `quoted`. */
function icmpError(type: number, code: number, quoted: Uint8Array): Uint8Array {
  const b = new Uint8Array(8 + quoted.length);
  b[0] = type;
  b[1] = code;
  b.set(quoted, 8);
  return b;
}

const PAYLOAD = new Uint8Array([1, 2, 3, 4, 5]);

describe("the relay's Echo bytes (packets.ts)", () => {
  it("an IPv4 Echo Request carries the ident, sequence and payload and a valid checksum", () => {
    const b = echoRequest(false, 0x1234, 7, PAYLOAD);
    expect([...b.subarray(0, 2)]).toEqual([8, 0]);
    expect([...b.subarray(4, 8)]).toEqual([0x12, 0x34, 0, 7]);
    expect([...b.subarray(8)]).toEqual([...PAYLOAD]);
    expect(checksum(b)).toBe(0);
  });

  it("an IPv6 Echo Request leaves the checksum to the kernel", () => {
    const b = echoRequest(true, 1, 2, PAYLOAD);
    expect([b[0], b[1], b[2], b[3]]).toEqual([128, 0, 0, 0]);
  });

  it("an Echo Reply is read by its ident and sequence", () => {
    const reply = echoRequest(false, 9, 300, PAYLOAD);
    reply[0] = 0;
    expect(parseMessage(reply, false)).toEqual({ kind: "reply", ident: 9, sequence: 300 });
    const v6 = echoRequest(true, 9, 301, PAYLOAD);
    v6[0] = 129;
    expect(parseMessage(v6, true)).toEqual({ kind: "reply", ident: 9, sequence: 301 });
  });

  it("a raw IPv4 socket's message is read past its IP header", () => {
    const reply = echoRequest(false, 9, 5, PAYLOAD);
    reply[0] = 0;
    const icmp = stripIpv4Header(ipv4(reply));
    expect(icmp === null ? null : parseMessage(icmp, false)).toEqual({
      kind: "reply",
      ident: 9,
      sequence: 5,
    });
    expect(stripIpv4Header(new Uint8Array(10))).toBeNull();
  });

  it("an IPv4 Time Exceeded is mapped to the Echo Request it quotes", () => {
    const m = icmpError(11, 0, ipv4(echoRequest(false, 9, 42, PAYLOAD)));
    expect(parseMessage(m, false)).toEqual({
      kind: "error",
      error: "time-exceeded",
      ident: 9,
      sequence: 42,
    });
  });

  it("an IPv6 error is mapped past the quoted packet's extension headers", () => {
    const echo = echoRequest(true, 9, 43, PAYLOAD);
    const hopByHop = new Uint8Array(8 + echo.length);
    hopByHop[0] = 58; // next: ICMPv6
    hopByHop.set(echo, 8);
    const m = icmpError(1, 0, ipv6(0, hopByHop));
    expect(parseMessage(m, true)).toEqual({
      kind: "error",
      error: "net-unreachable",
      ident: 9,
      sequence: 43,
    });
  });

  it("an error quoting a non-first fragment, or no Echo Request, is not ours", () => {
    const echo = echoRequest(true, 9, 44, PAYLOAD);
    const fragment = new Uint8Array(8 + echo.length);
    fragment[0] = 58;
    fragment[3] = 8; // offset 1 (×8 bytes)
    fragment.set(echo, 8);
    expect(quotedEcho(ipv6(44, fragment), true)).toBeNull();
    const reply = echoRequest(false, 9, 45, PAYLOAD);
    reply[0] = 0;
    expect(parseMessage(icmpError(11, 0, ipv4(reply)), false)).toBeNull();
  });

  it("ICMP types and codes map to the service's error types as the Go relay maps them", () => {
    expect(errorOf(false, 3, 0)).toBe("net-unreachable");
    expect(errorOf(false, 3, 1)).toBe("host-unreachable");
    expect(errorOf(false, 3, 2)).toBe("protocol-unreachable");
    expect(errorOf(false, 3, 3)).toBe("port-unreachable");
    expect(errorOf(false, 3, 13)).toBe("admin-prohibited");
    expect(errorOf(false, 11, 1)).toBeNull(); // fragment reassembly time exceeded
    expect(errorOf(true, 1, 0)).toBe("net-unreachable");
    expect(errorOf(true, 1, 3)).toBe("host-unreachable");
    expect(errorOf(true, 1, 4)).toBe("port-unreachable");
    expect(errorOf(true, 1, 6)).toBe("admin-prohibited");
    expect(errorOf(true, 3, 0)).toBe("time-exceeded");
    expect(errorOf(true, 4, 1)).toBe("protocol-unreachable");
    expect(errorOf(true, 4, 0)).toBeNull();
  });

  it("an error-queue message is the kernel's type and code and the quoted Echo Request", () => {
    expect(parseQueuedError(echoRequest(false, 7, 46, PAYLOAD), false, 11, 0)).toEqual({
      kind: "error",
      error: "time-exceeded",
      ident: 7,
      sequence: 46,
    });
    expect(parseQueuedError(new Uint8Array(4), false, 11, 0)).toBeNull();
  });
});

describe("the probe table (probe-table.ts)", () => {
  it("hands out sequence numbers in turn, skipping those still in flight", () => {
    const t = new ProbeTable<string>(10, 1000, () => 0);
    expect([t.add("a"), t.add("b")]).toEqual([1, 2]);
    expect(t.take(1)).toBe("a");
    expect(t.take(1)).toBeUndefined();
    expect(t.add("c")).toBe(3);
  });

  it("a full table refuses a probe instead of reusing a live number", () => {
    const t = new ProbeTable<number>(2, 1000, () => 0);
    expect([t.add(1), t.add(2), t.add(3)]).toEqual([1, 2, null]);
  });

  it("entries older than the budget are dropped when the next is added", () => {
    let now = 0;
    const t = new ProbeTable<string>(2, 1000, () => now);
    t.add("old");
    now = 500;
    t.add("newer");
    now = 1200;
    expect(t.add("new")).toBe(3);
    expect(t.size).toBe(2);
    expect(t.take(1)).toBeUndefined();
    expect(t.take(2)).toBe("newer");
  });
});

describe("the allow list (allow-list.ts)", () => {
  it("contains the addresses of its prefixes, of either family, and nothing else", () => {
    const a = AllowList.parse("198.18.30.0/24, fd00:30::/64");
    expect(a.contains("198.18.30.9")).toBe(true);
    expect(a.contains("198.18.31.9")).toBe(false);
    expect(a.contains("fd00:30::9")).toBe(true);
    expect(a.contains("fd00:31::9")).toBe(false);
    expect(a.contains("::ffff:198.18.30.9")).toBe(true);
    expect(a.contains("not an address")).toBe(false);
  });

  it("a bad prefix is refused by name", () => {
    expect(() => AllowList.parse("198.18.30.0/24,nope")).toThrow('not a prefix: "nope"');
  });

  it("repeated lists add up", () => {
    const a = AllowList.parse("198.18.30.0/24").concat(AllowList.parse("fd00:30::/64"));
    expect(a.toString()).toBe("198.18.30.0/24,fd00:30::/64");
  });
});

/** A socket addon that records what is sent and lets the test deliver messages. */
class FakeAddon implements IcmpAddon {
  readonly sent: { family: 4 | 6; data: Uint8Array; destination: string; ttl: number }[] = [];
  readonly deliver = new Map<4 | 6, IcmpMessageCallback>();
  refuse: { raw?: boolean; family?: 4 | 6 } = {};
  sendError: Error | null = null;
  open(family: 4 | 6, raw: boolean, onMessage: IcmpMessageCallback): IcmpSocket {
    if (this.refuse.raw === raw || this.refuse.family === family) {
      throw Object.assign(new Error("cannot open a socket: Operation not permitted"), {
        code: "EPERM",
      });
    }
    this.deliver.set(family, onMessage);
    return {
      closed: false,
      send: (data, destination, ttl) => {
        if (this.sendError !== null) throw this.sendError;
        this.sent.push({ family, data, destination, ttl });
      },
      close: () => {},
    };
  }
}

const ALLOW = AllowList.parse("198.18.30.0/24,fd00:30::/64");
const probe = { source: "198.18.0.1", destination: "198.18.30.9", ttl: 3, payload: PAYLOAD };

function relay(addon: FakeAddon, o: { raw?: boolean; budgetMs?: number; burst?: number } = {}) {
  return new Relay({
    allow: ALLOW,
    rate: 0,
    burst: o.burst ?? 10,
    budgetMs: o.budgetMs ?? 1000,
    raw: o.raw ?? true,
    addon,
  });
}

/** The reply a destination would send to the last probe sent. */
function replyTo(sent: Uint8Array, v6: boolean): Uint8Array {
  const r = new Uint8Array(sent);
  r[0] = v6 ? 129 : 0;
  return r;
}

describe("the relay (relay.ts)", () => {
  it("refuses a destination outside --allow, a family without a socket, a source over its rate", () => {
    const addon = new FakeAddon();
    addon.refuse = { family: 6 };
    const r = relay(addon, { burst: 1 });
    expect(r.check({ ...probe, destination: "198.18.31.9" })).toBe(
      "198.18.31.9 is outside --allow",
    );
    expect(r.check({ ...probe, destination: "fd00:30::9" })).toBe("no ICMP socket for fd00:30::9");
    expect(r.check(probe)).toBeNull();
    expect(r.check(probe)).toBe("198.18.0.1 is over the rate limit");
    r.close();
  });

  it("a probe leaves with the request's TTL and payload and is answered by its Echo Reply", async () => {
    const addon = new FakeAddon();
    const r = relay(addon);
    const answer = r.send(probe);
    const out = addon.sent[0];
    expect(out).toMatchObject({ family: 4, destination: "198.18.30.9", ttl: 3 });
    expect([...out.data.subarray(8)]).toEqual([...PAYLOAD]);
    addon.deliver.get(4)!(ipv4(replyTo(out.data, false)), "198.18.30.9", -1, -1);
    expect(await answer).toMatchObject({ kind: "reply" });
    r.close();
  });

  it("a raw socket ignores Echo Replies with another ident (someone else's ping)", async () => {
    const addon = new FakeAddon();
    const r = relay(addon, { budgetMs: 50 });
    const answer = r.send({ ...probe, destination: "fd00:30::9" });
    const other = replyTo(addon.sent[0].data, true);
    other[4] ^= 0xff;
    addon.deliver.get(6)!(other, "fd00:30::9", -1, -1);
    expect(await answer).toEqual({ kind: "nothing" });
    r.close();
  });

  it("a router's error from the datagram socket's error queue answers from that router", async () => {
    const addon = new FakeAddon();
    const r = relay(addon, { raw: false });
    const answer = r.send(probe);
    addon.deliver.get(4)!(addon.sent[0].data, "198.18.21.2", 11, 0);
    expect(await answer).toMatchObject({
      kind: "error",
      error: "time-exceeded",
      from: "198.18.21.2",
    });
    r.close();
  });

  it("nothing within the budget is nothing, and a late answer is dropped", async () => {
    const addon = new FakeAddon();
    const r = relay(addon, { budgetMs: 20 });
    expect(await r.send(probe)).toEqual({ kind: "nothing" });
    addon.deliver.get(4)!(ipv4(replyTo(addon.sent[0].data, false)), "198.18.30.9", -1, -1);
    r.close();
  });

  it("a failed send rejects with the errno", async () => {
    const addon = new FakeAddon();
    addon.sendError = Object.assign(new Error("cannot send: Network is unreachable"), {
      code: "ENETUNREACH",
    });
    const r = relay(addon);
    await expect(r.send(probe)).rejects.toMatchObject({ code: "ENETUNREACH" });
    r.close();
  });
});

const logs: { level: LogLevel; msg: string }[] = [];
const onLog = (level: LogLevel, msg: string) => {
  logs.push({ level, msg });
};

/** A request for a temporary address (what the service's --promiscuous routes make). */
function temporary(id: number, destination = "198.18.30.9") {
  return { ...toPolicyRequest(request(id)), destination, localAddressTemporary: true };
}

describe("the relay policy (policy.ts)", () => {
  afterEach(() => {
    logs.length = 0;
  });

  const open = (addon: FakeAddon) => (o: ConstructorParameters<typeof Relay>[0]) =>
    new Relay({ ...o, addon });

  it("a request for one of the service's own addresses falls through, unrelayed", () => {
    const addon = new FakeAddon();
    const p = relayPolicy({
      allow: ALLOW,
      rate: 1,
      burst: 5,
      budgetMs: 100,
      unprivileged: false,
      onLog,
      open: open(addon),
    });
    expect(p.handler({ ...temporary(1), localAddressTemporary: false })).toEqual({
      action: "fallthrough",
    });
    expect(addon.sent).toHaveLength(0);
    p.close();
  });

  it("consumes a relayed request and answers with what came back; the summary counts each", async () => {
    const addon = new FakeAddon();
    const p = relayPolicy({
      allow: ALLOW,
      rate: 1,
      burst: 5,
      budgetMs: 30,
      unprivileged: false,
      onLog,
      open: open(addon),
    });
    const replied = p.handler(temporary(1));
    addon.deliver.get(4)!(ipv4(replyTo(addon.sent[0].data, false)), "198.18.30.9", -1, -1);
    const errored = p.handler(temporary(2));
    const err = icmpError(3, 0, ipv4(addon.sent[1].data));
    addon.deliver.get(4)!(ipv4(err), "198.18.22.2", -1, -1);
    const silent = p.handler(temporary(3));
    const refused = p.handler(temporary(4, "198.18.32.9"));
    const answer = (d: unknown) => (d as { awaitSynthetic: Promise<unknown> }).awaitSynthetic;
    expect(await answer(replied)).toEqual({});
    expect(await answer(errored)).toEqual({
      error: { type: "net-unreachable", source: "198.18.22.2" },
    });
    expect(await answer(silent)).toBeNull();
    expect(refused).toEqual({ action: "fallthrough" });
    expect(relaySummary(p.counts)).toBe(
      " relayed=3 relay_replies=1 relay_errors=1 relay_silent=1 relay_refused=1",
    );
    p.close();
  });

  it("without raw sockets it relays with datagram ping sockets and says so in one warn line", () => {
    const addon = new FakeAddon();
    addon.refuse = { raw: true };
    const p = relayPolicy({
      allow: ALLOW,
      rate: 1,
      burst: 5,
      budgetMs: 30,
      unprivileged: false,
      onLog,
      open: open(addon),
    });
    expect(logs).toHaveLength(1);
    expect(logs[0].level).toBe("warn");
    expect(logs[0].msg).toMatch(
      /^no raw ICMP socket \(relay: no ICMP socket: .*\): relaying with datagram ping sockets/,
    );
    expect(addon.deliver.size).toBe(2);
    p.close();
  });

  it("--unprivileged never tries a raw socket", () => {
    const addon = new FakeAddon();
    addon.refuse = { raw: true };
    const p = relayPolicy({
      allow: ALLOW,
      rate: 1,
      burst: 5,
      budgetMs: 30,
      unprivileged: true,
      onLog,
      open: open(addon),
    });
    expect(logs).toHaveLength(0);
    p.close();
  });
});

describe("synthetic errors and awaited answers in the library", () => {
  let fake: FakeService | null = null;
  let client: PolicyClient | null = null;
  afterEach(async () => {
    await client?.drain().catch(() => {});
    client = null;
    fake?.stop();
    fake = null;
  });

  async function run(handler: Parameters<typeof connect>[0]["handler"], requests: number) {
    fake = new FakeService();
    await fake.start();
    const c = connect({ target: fake.address, onLog, handler });
    client = c;
    await fake.stream();
    await waitFor(() => c.connected, { what: "connected" });
    fake.send(
      0,
      Array.from({ length: requests }, (_, i) => request(i + 1)),
    );
    return fake;
  }

  const synthetic = (f: FakeService) =>
    f.calls[0].received.flatMap((m) =>
      m.message?.$case === "syntheticReply" ? [m.message.value] : [],
    );

  it("syntheticError sends a SyntheticReply carrying the error and its source", async () => {
    const f = await run(
      (r) => syntheticError(r, { type: "time-exceeded", source: "198.18.21.2" }),
      1,
    );
    await waitFor(() => synthetic(f).length === 1, { what: "the synthetic error" });
    expect(synthetic(f)[0]).toMatchObject({
      requestId: 1n,
      error: { type: SyntheticErrorType.SYNTHETIC_ERROR_TYPE_TIME_EXCEEDED, source: "198.18.21.2" },
    });
  });

  it("an awaited answer is sent once it resolves; null sends nothing", async () => {
    const f = await run(
      (r) => ({
        action: "consume",
        awaitSynthetic: Promise.resolve(r.sequence === 1 ? { delayMs: 0 } : null),
      }),
      2,
    );
    await waitFor(() => f.batches().flat().length === 2, { what: "both verdicts" });
    await waitFor(() => synthetic(f).length === 1, { what: "one synthetic reply" });
    await new Promise((r) => setTimeout(r, 50));
    expect(synthetic(f).map((s) => s.requestId)).toEqual([1n]);
  });
});
