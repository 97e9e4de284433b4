/**
 * Every client-controlled size is bounded: at the limit accepted, one over refused (a Rejection
 * naming the field and the limit, or INVALID_ARGUMENT for a Hello or an admin call), and a
 * refusal counts nothing as sent.
 */
import { credentials, type ServiceError } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import {
  Action,
  EchoForwarderClient,
  type GetStatsResponse,
  type PingEvent,
  type PingRequest,
  RejectionReason,
} from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { flattenStats } from "../../../src/netstack/stats.js";
import { WATCH_MAX_MS } from "../../../src/service/admin.js";
import { MAX_FILTER_PREFIXES, MAX_PREFIX_TEXT } from "../../../src/service/filter.js";
import { MAX_CLIENT_NAME_BYTES } from "../../../src/service/session.js";
import { SYNTHETIC_PAYLOAD_LIMIT } from "../../../src/service/synthetic-replies.js";
import { protoTimeOfMs } from "../../../src/service/wire.js";
import { v4Echo, v6Echo } from "../../helpers/packets.js";
import { type Harness, serviceTests } from "./harness.js";

const t = serviceTests();
let h: Harness;

/** A consumed request of `family`, held for a synthetic reply. */
async function consumedOne(family: "ipv4" | "ipv6") {
  h = await t.start({ deadlineMs: 5000 });
  const c = await t.connect();
  h.link.inject(family === "ipv4" ? v4Echo() : v6Echo());
  const [e] = await c.waitEvents(1);
  c.decide([e], Action.ACTION_CONSUME);
  await c.until(() => h.counter("service.outcomes.consume.verdict") === 1, "consumed");
  h.takeReplies();
  return { c, id: e.requestId };
}

describe("SyntheticReply.payload is bounded by what one datagram carries", () => {
  for (const [family, limit] of [
    ["ipv4", 65_507],
    ["ipv6", 65_527],
  ] as const) {
    it(`${family}: one byte over ${limit} is refused INVALID_ARGUMENT with nothing sent; then ${limit} bytes are sent`, async () => {
      expect(SYNTHETIC_PAYLOAD_LIMIT[family]).toBe(limit);
      const { c, id } = await consumedOne(family);
      c.synthetic(id, new Uint8Array(limit + 1));
      const [r] = await c.waitRejections(1);
      expect(r.requestId).toBe(id);
      expect(r.reason).toBe(RejectionReason.REJECTION_REASON_INVALID_ARGUMENT);
      expect(r.message).toContain(`payload: at most ${limit} bytes`);
      expect(r.message).toContain(`got ${limit + 1}`);
      expect(h.counter("service.synthetic.sent")).toBe(0);
      const sent =
        family === "ipv4" ? "icmp.v4.packetsSent.echoReply" : "icmp.v6.packetsSent.echoReply";
      const stats = (): number => Number(flattenStats(h.stack.stats)[sent] ?? 0);
      expect(stats()).toBe(0);
      expect(h.takeReplies()).toHaveLength(0);
      // The copy was kept: the payload at the limit still goes out, once.
      c.synthetic(id, new Uint8Array(limit));
      await c.until(() => h.counter("service.synthetic.sent") === 1, "sent");
      expect(stats()).toBe(1);
      expect(c.rejections).toHaveLength(1);
    });
  }
});

describe("Hello.client_name is at most 256 bytes", () => {
  it("256 bytes (UTF-8) are accepted; 257 end the call INVALID_ARGUMENT", async () => {
    h = await t.start();
    expect(MAX_CLIENT_NAME_BYTES).toBe(256);
    // 128 two-byte characters: 256 bytes.
    const ok = await t.connect({ clientName: "é".repeat(128) });
    expect(ok.welcome).not.toBeNull();
    const c = t.raw();
    c.hello({ clientName: `${"é".repeat(128)}x` });
    const s = await c.waitStatus();
    expect(s.code).toBe(3);
    expect(s.details).toBe("client_name: at most 256 bytes (UTF-8), got 257");
    expect(h.service.dispatcher.sessions).toHaveLength(1);
  });
});

describe("Hello.filter: at most 256 prefixes per list, 64 characters each", () => {
  it("256 prefixes are accepted; 257 end the call INVALID_ARGUMENT", async () => {
    h = await t.start();
    const prefixes = (n: number): string[] =>
      Array.from({ length: n }, (_, i) => `198.18.${i & 0xff}.${i >> 8}/32`);
    const ok = await t.connect({
      filter: {
        family: 0,
        sourcePrefixes: prefixes(MAX_FILTER_PREFIXES),
        destinationPrefixes: prefixes(MAX_FILTER_PREFIXES),
        temporaryOnly: false,
      },
    });
    expect(ok.welcome).not.toBeNull();
    for (const list of ["sourcePrefixes", "destinationPrefixes"] as const) {
      const c = t.raw();
      c.hello({
        filter: {
          family: 0,
          sourcePrefixes: [],
          destinationPrefixes: [],
          temporaryOnly: false,
          [list]: prefixes(MAX_FILTER_PREFIXES + 1),
        },
      });
      const s = await c.waitStatus();
      expect(s.code).toBe(3);
      const field = list === "sourcePrefixes" ? "source_prefixes" : "destination_prefixes";
      expect(s.details).toBe(`filter.${field}: at most 256 prefixes, got 257`);
    }
  });

  it("a prefix text of 64 characters is parsed; 65 are refused unread", async () => {
    h = await t.start();
    expect(MAX_PREFIX_TEXT).toBe(64);
    const status = async (text: string) => {
      const c = t.raw();
      c.hello({
        filter: {
          family: 0,
          sourcePrefixes: [text],
          destinationPrefixes: [],
          temporaryOnly: false,
        },
      });
      return c.waitStatus();
    };
    const at = await status("x".repeat(64));
    expect(at.code).toBe(3);
    expect(at.details).toBe(
      `filter.source_prefixes[0]: "${"x".repeat(64)}" is not an ADDRESS/PREFIX`,
    );
    const over = await status("x".repeat(65));
    expect(over.code).toBe(3);
    expect(over.details).toBe("filter.source_prefixes[0]: at most 64 characters, got 65");
  });
});

describe("a VerdictBatch holds at most the session's max_in_flight verdicts", () => {
  it("max_in_flight verdicts are each applied or answered; one more is refused whole, with one Rejection", async () => {
    h = await t.start({ deadlineMs: 5000 });
    const c = await t.connect({ maxInFlight: 4 });
    expect(c.welcome?.maxInFlight).toBe(4);
    for (let i = 1; i <= 4; i++) h.link.inject(v4Echo({ sequence: i }));
    const events = await c.waitEvents(4);
    // Five verdicts: the four pending requests and a fifth id. Refused whole: nothing applied.
    c.verdicts([
      ...events.map((e) => ({ requestId: e.requestId, action: Action.ACTION_CONSUME })),
      { requestId: 999n, action: Action.ACTION_CONSUME },
    ]);
    const [r] = await c.waitRejections(1);
    expect(r.requestId).toBe(0n);
    expect(r.reason).toBe(RejectionReason.REJECTION_REASON_INVALID_ARGUMENT);
    expect(r.message).toBe(
      "verdicts: at most 4 per VerdictBatch (the session's max_in_flight), got 5; none applied",
    );
    expect(h.service.dispatcher.pendingCount).toBe(4);
    expect(h.counter("service.outcomes.consume.verdict")).toBe(0);
    // Four: applied.
    c.decide(events, Action.ACTION_CONSUME);
    await c.until(() => h.counter("service.outcomes.consume.verdict") === 4, "decided");
    expect(c.rejections).toHaveLength(1);
    expect(h.counter("service.rejections.invalidArgument")).toBe(1);
  });
});

function admin(): EchoForwarderClient {
  return new EchoForwarderClient(h.service.address, credentials.createInsecure());
}

/** The first event of a Ping, or its error; the call is cancelled after the first event. */
function pingOnce(r: Partial<PingRequest>): Promise<PingEvent | ServiceError> {
  const c = admin();
  const call = c.ping({
    destination: "198.18.0.1",
    count: 1,
    interval: protoTimeOfMs(20),
    payloadSize: 8,
    timeout: protoTimeOfMs(50),
    ...r,
  });
  return new Promise((resolve) => {
    const done = (v: PingEvent | ServiceError): void => {
      call.cancel();
      c.close();
      resolve(v);
    };
    call.on("data", (e: PingEvent) => done(e));
    call.on("error", (e: ServiceError) => done(e));
  });
}

const refusal = (v: PingEvent | ServiceError): string | null =>
  "code" in v && v.code === 3 ? v.details : null;

describe("PingRequest is bounded", () => {
  it("payload_size: 65,507 to IPv4 and 65,527 to IPv6 are sent; one more is refused", async () => {
    h = await t.start();
    const v4 = await pingOnce({ payloadSize: 65_507 });
    expect(refusal(v4)).toBeNull();
    expect(flattenStats(h.stack.stats)["icmp.v4.packetsSent.echoRequest"]).toBe(1);
    expect(refusal(await pingOnce({ payloadSize: 65_508 }))).toBe(
      "payload_size: at most 65507 bytes to an IPv4 destination, got 65508",
    );
    const v6 = await pingOnce({ destination: "fd00:1::1", payloadSize: 65_527 });
    expect(refusal(v6)).toBeNull();
    expect(flattenStats(h.stack.stats)["icmp.v6.packetsSent.echoRequest"]).toBe(1);
    expect(refusal(await pingOnce({ destination: "fd00:1::1", payloadSize: 65_528 }))).toBe(
      "payload_size: at most 65527 bytes to an IPv6 destination, got 65528",
    );
  });

  it("count: 10,000 accepted, 10,001 refused", async () => {
    h = await t.start();
    expect(refusal(await pingOnce({ count: 10_000, interval: protoTimeOfMs(10) }))).toBeNull();
    expect(refusal(await pingOnce({ count: 10_001 }))).toBe("count: at most 10000, got 10001");
  });

  it("interval: 10 ms to 60 s accepted, 9 ms and 60,001 ms refused", async () => {
    h = await t.start();
    expect(refusal(await pingOnce({ interval: protoTimeOfMs(10) }))).toBeNull();
    expect(refusal(await pingOnce({ interval: protoTimeOfMs(60_000) }))).toBeNull();
    expect(refusal(await pingOnce({ interval: protoTimeOfMs(9) }))).toBe(
      "interval: between 10 and 60000 ms, got 9 ms",
    );
    expect(refusal(await pingOnce({ interval: protoTimeOfMs(60_001) }))).toBe(
      "interval: between 10 and 60000 ms, got 60001 ms",
    );
  });

  it("timeout: 60 s accepted, 60,001 ms refused", async () => {
    h = await t.start();
    // Accepted: the Echo Request goes out (the call is cancelled before the timeout).
    const c = admin();
    const call = c.ping({
      destination: "198.18.0.1",
      count: 1,
      interval: undefined,
      payloadSize: 0,
      timeout: protoTimeOfMs(60_000),
    });
    let error: ServiceError | null = null;
    call.on("error", (e: ServiceError) => {
      error = e;
    });
    await t
      .raw()
      .until(
        () => flattenStats(h.stack.stats)["icmp.v4.packetsSent.echoRequest"] === 1,
        "the Echo Request",
      );
    call.cancel();
    c.close();
    expect(error).toBeNull();
    expect(refusal(await pingOnce({ timeout: protoTimeOfMs(60_001) }))).toBe(
      "timeout: at most 60000 ms, got 60001 ms",
    );
  });

  it("destination: 64 characters are parsed, 65 refused unread", async () => {
    h = await t.start();
    expect(refusal(await pingOnce({ destination: "y".repeat(64) }))).toBe(
      `destination: "${"y".repeat(64)}" is not an IP address`,
    );
    expect(refusal(await pingOnce({ destination: "y".repeat(65) }))).toBe(
      "destination: at most 64 characters, got 65",
    );
  });
});

describe("WatchStatsRequest.interval is at most one hour", () => {
  it("3,600,000 ms accepted (a snapshot at once), 3,600,001 ms refused INVALID_ARGUMENT", async () => {
    h = await t.start();
    expect(WATCH_MAX_MS).toBe(3_600_000);
    const first = (ms: number): Promise<GetStatsResponse | ServiceError> => {
      const c = admin();
      const call = c.watchStats({ interval: protoTimeOfMs(ms) });
      return new Promise((resolve) => {
        const done = (v: GetStatsResponse | ServiceError): void => {
          call.cancel();
          c.close();
          resolve(v);
        };
        call.on("data", (r: GetStatsResponse) => done(r));
        call.on("error", (e: ServiceError) => done(e));
      });
    };
    const ok = await first(3_600_000);
    expect("counters" in ok).toBe(true);
    const over = await first(3_600_001);
    expect("code" in over && over.code).toBe(3);
    expect("details" in over && over.details).toBe("interval: at most 3600000 ms, got 3600001 ms");
  });
});

describe("EchoAdmin address and prefix texts are at most 64 characters", () => {
  it("64 characters reach the network control (here: none to change), 65 are refused INVALID_ARGUMENT unread", async () => {
    h = await t.start();
    const { EchoAdminClient } = await import("../../../src/gen/icmpfwd/v1/admin.js");
    const admin = new EchoAdminClient(h.service.address, credentials.createInsecure());
    const call = (destination: string) =>
      new Promise<ServiceError | null>((resolve) =>
        admin.addRoute({ destination, nic: 0 }, (e) => resolve(e)),
      );
    try {
      const at = await call("1".repeat(MAX_PREFIX_TEXT));
      expect([at?.code, at?.details]).toEqual([9, "this service has no netstack to change"]);
      const over = await call("1".repeat(MAX_PREFIX_TEXT + 1));
      expect([over?.code, over?.details]).toEqual([
        3,
        `destination: at most ${MAX_PREFIX_TEXT} characters, got ${MAX_PREFIX_TEXT + 1}`,
      ]);
    } finally {
      admin.close();
    }
  });
});
