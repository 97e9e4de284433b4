/**
 * Packet hooks at gVisor's hook points (prerouting, input, output, postrouting): verdicts,
 * order, counters per point and per hook; built-in and synthetic replies pass output.
 */
import { describe, expect, it } from "vitest";
import { ICMPV4_PROTOCOL_NUMBER } from "../../../src/netstack/buffer.js";
import { IPv4Header } from "../../../src/netstack/header/ipv4.js";
import type { HookPoint } from "../../../src/netstack/hooks.js";
import { evenPieces, fragmentV4 } from "../../helpers/fragments.js";
import { payloadOf, v4Echo, v6Echo } from "../../helpers/packets.js";
import { testStack } from "../../helpers/stack.js";

describe("packet hooks", () => {
  it("runs the points in order: prerouting, input, output, postrouting", () => {
    const t = testStack();
    const seen: string[] = [];
    for (const p of ["postrouting", "output", "input", "prerouting"] as HookPoint[]) {
      t.stack.addHook(p, (_pkt, ctx) => {
        seen.push(ctx.point);
        return "accept";
      });
    }
    t.link.inject(v4Echo());
    expect(t.link.drain().length).toBe(1);
    expect(seen).toEqual(["prerouting", "input", "output", "postrouting"]);
    for (const p of ["prerouting", "input", "output", "postrouting"] as const) {
      expect(t.stack.stats.hooks[p].accepted).toBe(1);
    }
  });

  it("runs the hooks of one point by priority, then in the order added", () => {
    const t = testStack();
    const seen: string[] = [];
    t.stack.addHook(
      "input",
      () => {
        seen.push("b");
        return "accept";
      },
      { priority: 0 },
    );
    t.stack.addHook(
      "input",
      () => {
        seen.push("c");
        return "accept";
      },
      { priority: 0 },
    );
    t.stack.addHook(
      "input",
      () => {
        seen.push("a");
        return "accept";
      },
      { priority: -10 },
    );
    t.link.inject(v4Echo());
    expect(seen).toEqual(["a", "b", "c"]);
  });

  it("drops at prerouting: counted, nothing later runs", () => {
    const t = testStack();
    let later = 0;
    const h = t.stack.addHook("prerouting", () => "drop", { name: "deny" });
    t.stack.addHook("prerouting", () => {
      later++;
      return "accept";
    });
    t.link.inject(v4Echo(), v6Echo());
    expect(t.link.drain()).toEqual([]);
    expect(later).toBe(0);
    expect(h.counters.dropped).toBe(2);
    expect(t.stack.stats.hooks.prerouting.dropped).toBe(2);
    expect(t.stack.stats.ipv4.preroutingDropped).toBe(1);
    expect(t.stack.stats.ipv6.preroutingDropped).toBe(1);
    expect(t.stack.stats.ipv4.packetsDelivered).toBe(0);
  });

  it("sees fragments at prerouting and the reassembled datagram at input", () => {
    const t = testStack();
    const sizes: Record<string, number[]> = { prerouting: [], input: [] };
    t.stack.addHook("prerouting", (p) => {
      sizes.prerouting.push(p.length);
      return "accept";
    });
    t.stack.addHook("input", (p) => {
      sizes.input.push(p.length);
      return "accept";
    });
    const req = v4Echo({ payload: payloadOf(972), flags: 0 });
    t.link.inject(...fragmentV4(req, evenPieces(980, 496)));
    expect(sizes.prerouting).toEqual([516, 504]);
    expect(sizes.input).toEqual([1000]);
  });

  it("drops at input: counted, no reply and no handler call", () => {
    const t = testStack();
    let handled = 0;
    t.stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, () => {
      handled++;
      return false;
    });
    t.stack.addHook("input", () => "drop");
    t.link.inject(v4Echo());
    expect(t.link.drain()).toEqual([]);
    expect(handled).toBe(0);
    expect(t.stack.stats.ipv4.inputDropped).toBe(1);
  });

  it("drops at output the built-in reply: counted, the writer sees success (gVisor)", () => {
    const t = testStack();
    t.stack.addHook("output", () => "drop");
    t.link.inject(v4Echo());
    expect(t.link.drain()).toEqual([]);
    expect(t.stack.stats.ipv4.outputDropped).toBe(1);
    expect(t.stack.stats.icmp.v4.packetsSent.echoReply).toBe(1);
    expect(t.stack.stats.ipv4.packetsSent).toBe(0);
  });

  it("passes ICMP errors the stack originates through output", () => {
    const t = testStack();
    const types: number[] = [];
    t.stack.addHook("output", (p) => {
      types.push(p[new IPv4Header(p).ihl]);
      return "accept";
    });
    t.link.inject(v4Echo({ protocol: 17 }));
    expect(types).toEqual([3]);
  });

  it("drops at postrouting before fragmentation (sees the whole datagram)", () => {
    const t = testStack({ mtu: 1500 });
    const sizes: number[] = [];
    t.stack.addHook("postrouting", (p) => {
      sizes.push(p.length);
      return "drop";
    });
    t.link.inject(v4Echo({ payload: payloadOf(2000), flags: 0 }));
    expect(sizes).toEqual([2028]);
    expect(t.link.drain()).toEqual([]);
    expect(t.stack.stats.ipv4.postroutingDropped).toBe(1);
  });

  it("sends a rewrite from output as the hook left it (checksums are the hook's job)", () => {
    const t = testStack();
    t.stack.addHook("output", (p) => {
      const q = p.slice();
      q[1] = 0xb8; // TOS, header checksum left stale on purpose
      return q;
    });
    t.link.inject(v4Echo());
    const [out] = t.link.drain();
    expect(out[1]).toBe(0xb8);
    expect(new IPv4Header(out).isChecksumValid()).toBe(false);
    expect(t.stack.stats.hooks.output.rewritten).toBe(1);
  });

  it("passes each hook the previous hook's rewrite", () => {
    const t = testStack();
    t.stack.addHook("output", (p) => {
      const q = p.slice();
      q[8] = 7;
      return q;
    });
    let ttl = 0;
    t.stack.addHook("output", (p) => {
      ttl = p[8];
      return "accept";
    });
    t.link.inject(v4Echo());
    expect(ttl).toBe(7);
  });

  it("drops a prerouting rewrite with a broken IPv4 header checksum as malformed", () => {
    const t = testStack();
    t.stack.addHook("prerouting", (p) => {
      const q = p.slice();
      q[8] = 1;
      return q;
    });
    t.link.inject(v4Echo());
    expect(t.stack.stats.ipv4.malformedPacketsReceived).toBe(1);
    expect(t.stack.stats.hooks.prerouting.rewritten).toBe(1);
  });

  it("answers a rewritten request that keeps its checksum right", () => {
    const t = testStack();
    t.stack.addHook("prerouting", (p) => {
      const q = p.slice();
      const h = new IPv4Header(q);
      h.tos = 0x20;
      h.checksum = 0;
      h.checksum = h.calculateChecksum();
      return q;
    });
    t.link.inject(v4Echo());
    const [out] = t.link.drain();
    expect(new IPv4Header(out).tos).toBe(0x20);
  });

  it("drops the packet when a hook throws (fail closed) and counts the error", () => {
    const t = testStack();
    const h = t.stack.addHook("input", () => {
      throw new Error("boom");
    });
    expect(() => t.link.inject(v4Echo())).not.toThrow();
    expect(t.link.drain()).toEqual([]);
    expect(h.counters.errors).toBe(1);
    expect(t.stack.stats.hooks.input.errors).toBe(1);
    expect(t.stack.stats.hooks.input.dropped).toBe(1);
  });

  it("stops running a removed hook", () => {
    const t = testStack();
    const h = t.stack.addHook("prerouting", () => "drop");
    h.remove();
    h.remove();
    t.link.inject(v4Echo());
    expect(t.link.drain().length).toBe(1);
    expect(h.counters.dropped).toBe(0);
  });

  it("passes the IPv6 Echo Reply through output", () => {
    const t = testStack();
    const protos: number[] = [];
    t.stack.addHook("output", (_p, ctx) => {
      protos.push(ctx.netProto);
      return "accept";
    });
    t.link.inject(v6Echo());
    expect(protos).toEqual([0x86dd]);
  });
});
