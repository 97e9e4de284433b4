/**
 * Bad input never crashes the service and never gives a request a second outcome: a Rejection
 * naming the request and the reason (the stream stays up), or a gRPC status with a reason.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  Action,
  ClientMessage,
  Family,
  Mode,
  RejectionReason,
} from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { waitFor } from "../../helpers/netns.js";
import { v4Echo } from "../../helpers/packets.js";
import { type Harness, outcomes, serviceTests, type TestClient } from "./harness.js";

const t = serviceTests();
const { connect, raw } = t;
let h: Harness;
// Registered after serviceTests(): runs before its cleanup (after-hooks run in reverse).
afterEach(async () => {
  // Whatever came before, the service still works and every request has one outcome.
  t.closeClients();
  if (h !== undefined && !h.service.dispatcher.draining) {
    const d = h.service.dispatcher;
    await waitFor(() => d.sessions.length === 0 && d.pendingCount === 0, { what: "sessions gone" });
    const c = await connect();
    h.link.inject(v4Echo({ ident: 4242 }));
    const e = await c.until(() => c.events.find((x) => x.ident === 4242), "health check");
    c.decide([e], Action.ACTION_CONSUME);
    await c.until(() => d.pendingCount === 0, "health check decided");
    expect(outcomes(h, null, null)).toBe(h.counter("service.requests"));
  }
});

/** One decided request (its verdict was REPLY). */
async function decidedRequest(c: TestClient) {
  h.link.inject(v4Echo({ sequence: c.events.length + 1 }));
  const events = await c.waitEvents(c.events.length + 1);
  const e = events[events.length - 1];
  c.decide([e], Action.ACTION_REPLY);
  await c.until(() => h.service.dispatcher.pendingCount === 0, "decided");
  return e;
}

describe("bad verdicts get a Rejection naming the request; the stream stays up", () => {
  it("an unknown request id", async () => {
    h = await t.start();
    const c = await connect();
    c.verdicts([
      { requestId: 999n, action: Action.ACTION_CONSUME },
      { requestId: 0n, action: Action.ACTION_CONSUME },
      { requestId: 18446744073709551615n, action: Action.ACTION_CONSUME },
    ]);
    const rs = await c.waitRejections(3);
    expect(rs.map((r) => [r.requestId, r.reason])).toEqual([
      [999n, RejectionReason.REJECTION_REASON_UNKNOWN_REQUEST],
      [0n, RejectionReason.REJECTION_REASON_UNKNOWN_REQUEST],
      [18446744073709551615n, RejectionReason.REJECTION_REASON_UNKNOWN_REQUEST],
    ]);
    expect(h.counter("service.rejections.unknownRequest")).toBe(3);
  });

  it("a foreign request id (sent to another session), which the owner can still decide", async () => {
    h = await t.start();
    const a = await connect();
    h.link.inject(v4Echo());
    const [e] = await a.waitEvents(1);
    const b = await connect();
    b.decide([e], Action.ACTION_CONSUME);
    const [r] = await b.waitRejections(1);
    expect(r.requestId).toBe(e.requestId);
    expect(r.reason).toBe(RejectionReason.REJECTION_REASON_FOREIGN_REQUEST);
    expect(h.service.dispatcher.pendingCount).toBe(1);
    a.decide([e], Action.ACTION_REPLY);
    await a.until(() => h.counter("service.outcomes.reply.verdict") === 1, "owner decided");
    // After it ended, b's verdict is still foreign.
    b.decide([e], Action.ACTION_CONSUME);
    await b.waitRejections(2);
    expect(b.rejections[1].reason).toBe(RejectionReason.REJECTION_REASON_FOREIGN_REQUEST);
    expect(h.counter("service.rejections.foreignRequest")).toBe(2);
  });

  it("an expired request id: the deadline came first, on-timeout stands", async () => {
    h = await t.start({ deadlineMs: 30 });
    const c = await connect();
    h.link.inject(v4Echo());
    const [e] = await c.waitEvents(1);
    await c.until(() => h.counter("service.outcomes.fallthrough.timeout") === 1, "timeout");
    c.decide([e], Action.ACTION_CONSUME);
    const [r] = await c.waitRejections(1);
    expect([r.requestId, r.reason]).toEqual([
      e.requestId,
      RejectionReason.REJECTION_REASON_EXPIRED,
    ]);
    expect(r.message).toMatch(/deadline/);
    expect(h.counter("service.outcomes.consume.verdict")).toBe(0);
    expect(h.counter("service.rejections.expired")).toBe(1);
  });

  it("an already decided request id", async () => {
    h = await t.start();
    const c = await connect();
    const e = await decidedRequest(c);
    c.decide([e], Action.ACTION_CONSUME);
    const [r] = await c.waitRejections(1);
    expect([r.requestId, r.reason]).toEqual([
      e.requestId,
      RejectionReason.REJECTION_REASON_ALREADY_DECIDED,
    ]);
    expect(h.counter("service.outcomes.reply.verdict")).toBe(1);
    expect(h.counter("service.outcomes.consume.verdict")).toBe(0);
  });

  it("duplicate verdicts in one batch: the first decides, the second is rejected; one reply", async () => {
    h = await t.start();
    const c = await connect();
    h.link.inject(v4Echo());
    const [e] = await c.waitEvents(1);
    c.verdicts([
      { requestId: e.requestId, action: Action.ACTION_REPLY },
      { requestId: e.requestId, action: Action.ACTION_REPLY },
      { requestId: e.requestId, action: Action.ACTION_CONSUME },
    ]);
    await c.waitRejections(2);
    expect(c.rejections.map((r) => r.reason)).toEqual([
      RejectionReason.REJECTION_REASON_ALREADY_DECIDED,
      RejectionReason.REJECTION_REASON_ALREADY_DECIDED,
    ]);
    await new Promise((r) => setImmediate(r));
    expect(h.takeReplies()).toHaveLength(1);
    expect(outcomes(h, null, null)).toBe(1);
  });

  it("an unspecified or unknown action: rejected, the request stays pending", async () => {
    h = await t.start();
    const c = await connect();
    h.link.inject(v4Echo());
    const [e] = await c.waitEvents(1);
    c.verdicts([
      { requestId: e.requestId, action: Action.ACTION_UNSPECIFIED },
      { requestId: e.requestId, action: 42 as Action },
    ]);
    const rs = await c.waitRejections(2);
    expect(rs.map((r) => [r.requestId, r.reason])).toEqual([
      [e.requestId, RejectionReason.REJECTION_REASON_INVALID_ACTION],
      [e.requestId, RejectionReason.REJECTION_REASON_INVALID_ACTION],
    ]);
    expect(h.service.dispatcher.pendingCount).toBe(1);
    c.decide([e], Action.ACTION_CONSUME);
    await c.until(() => h.counter("service.outcomes.consume.verdict") === 1, "decided");
  });
});

describe("protocol violations", () => {
  it("a verdict before Hello: one Rejection per verdict", async () => {
    h = await t.start();
    const c = raw();
    c.verdicts([
      { requestId: 5n, action: Action.ACTION_CONSUME },
      { requestId: 6n, action: Action.ACTION_REPLY },
    ]);
    const rs = await c.waitRejections(2);
    expect(rs.map((r) => [r.requestId, r.reason])).toEqual([
      [5n, RejectionReason.REJECTION_REASON_PROTOCOL_VIOLATION],
      [6n, RejectionReason.REJECTION_REASON_PROTOCOL_VIOLATION],
    ]);
    // The stream stays up: a Hello now works.
    c.hello();
    await c.until(() => c.welcome, "Welcome");
  });

  it("a second Hello", async () => {
    h = await t.start();
    const c = await connect();
    c.hello();
    const [r] = await c.waitRejections(1);
    expect(r.reason).toBe(RejectionReason.REJECTION_REASON_PROTOCOL_VIOLATION);
    expect(r.message).toMatch(/second Hello/);
    expect(h.service.dispatcher.sessions).toHaveLength(1);
  });

  it("Drain before Hello", async () => {
    h = await t.start();
    const c = raw();
    c.drain();
    const [r] = await c.waitRejections(1);
    expect(r.reason).toBe(RejectionReason.REJECTION_REASON_PROTOCOL_VIOLATION);
  });

  it("a synthetic reply for a request that never existed", async () => {
    h = await t.start();
    const c = await connect();
    c.send({ message: { $case: "syntheticReply", value: { requestId: 3n, payload: undefined } } });
    const [r] = await c.waitRejections(1);
    expect([r.requestId, r.reason]).toEqual([3n, RejectionReason.REJECTION_REASON_UNKNOWN_REQUEST]);
  });
});

describe("bad Hellos end the call with a status", () => {
  const cases: [string, Parameters<TestClient["hello"]>[0], number, RegExp][] = [
    ["an unknown protocol version", { protocolVersion: 2 }, 9, /protocol_version 2/],
    ["protocol version 0", { protocolVersion: 0 }, 9, /protocol_version 0/],
    ["an unspecified mode", { mode: Mode.MODE_UNSPECIFIED }, 3, /mode/],
    [
      "a bad filter prefix",
      {
        filter: {
          family: Family.FAMILY_UNSPECIFIED,
          sourcePrefixes: ["198.18.0.0/24", "nonsense"],
          destinationPrefixes: [],
          temporaryOnly: false,
        },
      },
      3,
      /filter\.source_prefixes\[1\]/,
    ],
    [
      "an unknown filter family",
      {
        filter: {
          family: 9 as Family,
          sourcePrefixes: [],
          destinationPrefixes: [],
          temporaryOnly: false,
        },
      },
      3,
      /filter\.family/,
    ],
  ];
  for (const [what, hello, code, message] of cases) {
    it(what, async () => {
      h = await t.start();
      const c = raw();
      c.hello(hello);
      const s = await c.waitStatus();
      expect(s.code).toBe(code);
      expect(s.details).toMatch(message);
      expect(c.welcome).toBeNull();
      expect(h.service.dispatcher.sessions).toHaveLength(0);
    });
  }
});

describe("bytes that are not a ClientMessage", () => {
  it("garbage bytes get an INVALID_ARGUMENT Rejection; the stream stays up", async () => {
    h = await t.start();
    const c = await connect();
    c.sendRaw(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    const [r] = await c.waitRejections(1);
    expect([r.requestId, r.reason]).toEqual([
      0n,
      RejectionReason.REJECTION_REASON_INVALID_ARGUMENT,
    ]);
    expect(r.message).toMatch(/not a ClientMessage/);
    // An empty message decodes to no message at all.
    c.sendRaw(Buffer.alloc(0));
    await c.waitRejections(2);
    expect(c.rejections[1].message).toMatch(/empty ClientMessage/);
    expect(h.counter("service.rejections.invalidArgument")).toBe(2);
    h.link.inject(v4Echo());
    await c.waitEvents(1);
    c.decide(c.events, Action.ACTION_CONSUME);
  });

  it("an oversize message ends the call RESOURCE_EXHAUSTED; its requests get on-disconnect once", async () => {
    h = await t.start();
    const c = await connect();
    h.link.inject(v4Echo());
    await c.waitEvents(1);
    c.sendRaw(
      Buffer.from(
        ClientMessage.encode({
          message: {
            $case: "hello",
            value: {
              protocolVersion: 1,
              clientName: "x".repeat(2 << 20),
              mode: Mode.MODE_DECIDE,
              filter: undefined,
              maxInFlight: 0,
              payloadBytes: 0,
            },
          },
        }).finish(),
      ),
    );
    const s = await c.waitStatus();
    expect(s.code).toBe(8);
    await c.until(() => h.counter("service.outcomes.fallthrough.disconnect") === 1, "disconnect");
    expect(outcomes(h, null, null)).toBe(1);
  });
});
