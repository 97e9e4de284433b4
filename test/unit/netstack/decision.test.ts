import { describe, expect, it } from "vitest";
import { ICMPV4_PROTOCOL_NUMBER } from "../../../src/netstack/buffer.js";
import { Forwarder } from "../../../src/netstack/icmp/forwarder.js";
import { Decision } from "../../../src/netstack/transport.js";
import { v4Echo } from "../../helpers/packets.js";
import { testStack } from "../../helpers/stack.js";

describe("Decision (a promise-free async answer)", () => {
  it("settles once: later settle() calls change nothing", () => {
    const d = new Decision();
    const seen: boolean[] = [];
    d.onSettled((c) => seen.push(c));
    d.settle(true);
    d.settle(false);
    expect(seen).toEqual([true]);
  });

  it("calls every callback in registration order, and a late one at once", () => {
    const d = new Decision();
    const seen: string[] = [];
    d.onSettled(() => seen.push("a"));
    d.onSettled(() => seen.push("b"));
    d.settle(false);
    d.onSettled(() => seen.push("c"));
    expect(seen).toEqual(["a", "b", "c"]);
    expect(d.settled).toBe(true);
  });

  it("a Forwarder handler answering by Decision holds the request until it settles", () => {
    const t = testStack();
    const pending: Decision[] = [];
    const f = new Forwarder(() => {
      const d = new Decision();
      pending.push(d);
      return d;
    });
    t.stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, f.handlePacket);
    t.link.inject(v4Echo({ sequence: 1 }), v4Echo({ sequence: 2 }));
    expect(t.link.drain()).toHaveLength(0);
    expect(f.stats.held).toBe(2);
    pending[0].settle(true); // consumed: no reply
    pending[1].settle(false); // fallthrough: the built-in reply
    expect(t.link.drain()).toHaveLength(1);
    expect(f.stats).toMatchObject({ held: 0, consumed: 1, notConsumed: 1 });
    expect(t.stack.stats.icmp.v4.packetsSent.echoReply).toBe(1);
  });
});
