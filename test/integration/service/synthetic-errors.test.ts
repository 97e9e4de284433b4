/**
 * Synthetic ICMP errors over the wire: after CONSUME, a SyntheticReply with `error` sends one
 * ICMP error from the router's address the client names, counted by type; a malformed one is
 * refused with INVALID_ARGUMENT naming the field, nothing is sent, and the request may still be
 * answered; an error is the request's one synthetic answer.
 */
import { describe, expect, it } from "vitest";
import {
  Action,
  RejectionReason,
  SyntheticErrorType,
} from "../../../src/gen/icmpfwd/v1/forwarder.js";
import { v4Echo } from "../../helpers/packets.js";
import { type Harness, serviceTests } from "./harness.js";

const t = serviceTests();
let h: Harness;

async function consumed() {
  h = await t.start();
  const c = await t.connect();
  h.link.inject(v4Echo({ sequence: 1, ttl: 1, payload: Uint8Array.of(1, 2, 3) }));
  const [event] = await c.waitEvents(1);
  c.decide([event], Action.ACTION_CONSUME);
  await c.until(() => h.counter("service.outcomes.consume.verdict") === 1, "consumed");
  expect(h.link.drain()).toHaveLength(0);
  return { c, id: event.requestId };
}

const TIME_EXCEEDED = SyntheticErrorType.SYNTHETIC_ERROR_TYPE_TIME_EXCEEDED;

describe("synthetic ICMP errors over the wire", () => {
  it("an error from the router's address leaves once, counted by its type and not as a synthetic reply", async () => {
    const { c, id } = await consumed();
    c.syntheticError(id, TIME_EXCEEDED, "198.18.5.1");
    await c.until(() => h.counter("service.synthetic.errors.timeExceeded") === 1, "sent");
    const [packet] = h.link.drain();
    expect([...packet.subarray(12, 16)]).toEqual([198, 18, 5, 1]);
    expect([...packet.subarray(16, 20)]).toEqual([198, 18, 0, 1]);
    expect([packet[20], packet[21]]).toEqual([11, 0]);
    expect(h.counter("service.synthetic.sent")).toBe(0);
    expect(h.stack.stats.icmp.v4.packetsSent.timeExceeded).toBe(1);
    expect(c.rejections).toHaveLength(0);
  });

  it("a malformed error is refused with INVALID_ARGUMENT naming the field, nothing is sent, and the request can still be answered", async () => {
    const { c, id } = await consumed();
    const cases: [SyntheticErrorType, string, Uint8Array | undefined, RegExp][] = [
      [
        SyntheticErrorType.SYNTHETIC_ERROR_TYPE_UNSPECIFIED,
        "198.18.5.1",
        undefined,
        /error\.type: required/,
      ],
      [TIME_EXCEEDED, "not-an-ip", undefined, /error\.source: "not-an-ip" is not an IP address/],
      [TIME_EXCEEDED, "1".repeat(65), undefined, /error\.source: at most 64 characters, got 65/],
      [TIME_EXCEEDED, "198.18.5.1", Uint8Array.of(1), /payload and error are exclusive/],
      [
        TIME_EXCEEDED,
        "198.18.0.2",
        undefined,
        /198\.18\.0\.2 is one of the netstack's own addresses/,
      ],
      [TIME_EXCEEDED, "fd00:5::1", undefined, /is not an IPv4 address, as the request is/],
      [TIME_EXCEEDED, "224.0.0.9", undefined, /is not a unicast address/],
    ];
    for (const [type, source, payload] of cases) c.syntheticError(id, type, source, payload);
    const rejections = await c.waitRejections(cases.length);
    rejections.forEach((r, i) => {
      expect(r.reason).toBe(RejectionReason.REJECTION_REASON_INVALID_ARGUMENT);
      expect(r.requestId).toBe(id);
      expect(r.message).toMatch(cases[i][3]);
      expect(r.message).toMatch(/nothing sent$/);
    });
    expect(h.link.drain()).toHaveLength(0);
    expect(h.counter("service.rejections.invalidArgument")).toBe(cases.length);
    // Positive control: the same request, answered correctly.
    c.syntheticError(id, SyntheticErrorType.SYNTHETIC_ERROR_TYPE_PORT_UNREACHABLE, "198.18.5.1");
    await c.until(() => h.counter("service.synthetic.errors.portUnreachable") === 1, "sent");
    const [packet] = h.link.drain();
    expect([packet[20], packet[21]]).toEqual([3, 3]);
  });

  it("an error is the request's one synthetic answer: a later reply is refused as already sent", async () => {
    const { c, id } = await consumed();
    c.syntheticError(id, SyntheticErrorType.SYNTHETIC_ERROR_TYPE_NET_UNREACHABLE, "198.18.5.1");
    await c.until(() => h.counter("service.synthetic.errors.netUnreachable") === 1, "sent");
    c.synthetic(id);
    const [r] = await c.waitRejections(1);
    expect(r.reason).toBe(RejectionReason.REJECTION_REASON_SYNTHETIC_NOT_ALLOWED);
    expect(r.message).toMatch(/already sent/);
    expect(h.link.drain()).toHaveLength(1);
    expect(h.counter("service.synthetic.sent")).toBe(0);
  });
});
