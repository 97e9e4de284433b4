/**
 * Fragmentation on output (gVisor's ipv4/ipv6 handleFragments + buildNextFragment): replies
 * larger than the MTU leave in fragments that reassemble to the reply; IPv4 DF forbids it.
 */
import { describe, expect, it } from "vitest";
import { checksum, pseudoHeaderChecksum } from "../../../src/netstack/header/checksum.js";
import { IPV4_FLAG_DF, IPv4Header } from "../../../src/netstack/header/ipv4.js";
import { IPv6Header } from "../../../src/netstack/header/ipv6.js";
import {
  evenPieces,
  fragmentV4,
  fragmentV6,
  reassembleV4,
  reassembleV6,
  v6FragmentId,
} from "../../helpers/fragments.js";
import { payloadOf, v4Echo, v6Echo } from "../../helpers/packets.js";
import { testStack } from "../../helpers/stack.js";

/** `ping -s 8000`: 8008 bytes of ICMP, as the kernel fragments it for a 1500-byte MTU. */
function pingV4(flags = 0) {
  const request = v4Echo({ payload: payloadOf(8000), flags, id: 0x4321 });
  return { request, frags: fragmentV4(request, evenPieces(8008, 1480)) };
}

describe("IPv4 fragmentation", () => {
  it("sends a reply larger than the MTU in fragments that reassemble to the reply", () => {
    const t = testStack({ mtu: 1500 });
    const { request, frags } = pingV4();
    t.link.inject(...frags);
    const out = t.link.drain();
    expect(out.length).toBe(6);
    for (const [i, f] of out.entries()) {
      const h = new IPv4Header(f);
      expect(f.length).toBeLessThanOrEqual(1500);
      expect(h.isChecksumValid()).toBe(true);
      expect(h.id).toBe(0x4321);
      expect(h.dontFragment).toBe(false);
      expect(h.moreFragments).toBe(i < 5);
      expect(h.fragmentOffset).toBe(i * 1480);
    }
    const reply = reassembleV4(out);
    expect(reply.length).toBe(request.length);
    const msg = reply.subarray(20);
    expect(msg[0]).toBe(0);
    expect(checksum(msg)).toBe(0xffff);
    expect([...msg.subarray(8)]).toEqual([...payloadOf(8000)]);
    const s = t.stack.stats.ipv4;
    expect(s.packetsSent).toBe(6);
    expect(s.fragmentsSent).toBe(6);
    expect(s.packetsFragmented).toBe(1);
    expect(t.stack.stats.icmp.v4.packetsSent.echoReply).toBe(1);
    expect(t.stack.stats.nic.packetsSent).toBe(6);
  });

  it("cuts fragment data to multiples of 8 below the MTU", () => {
    const t = testStack({ mtu: 1006 });
    t.link.inject(...pingV4().frags);
    const out = t.link.drain();
    // 1006 - 20 = 986 → 984 bytes of data per fragment.
    for (const f of out.slice(0, -1)) expect(f.length).toBe(20 + 984);
    expect(reassembleV4(out).length).toBe(8028);
  });

  it("does not fragment a reply with DF set: not sent, counted (messageTooLong)", () => {
    // An unfragmented DF request bigger than this stack's MTU (the channel link takes it).
    const t = testStack({ mtu: 1500 });
    t.link.inject(v4Echo({ payload: payloadOf(2000), flags: IPV4_FLAG_DF }));
    expect(t.link.drain()).toEqual([]);
    const s = t.stack.stats.ipv4;
    expect(s.outgoingPacketTooBig).toBe(1);
    expect(s.outgoingPacketErrors).toBe(1);
    expect(s.packetsSent).toBe(0);
    expect(t.stack.stats.icmp.v4.packetsSent.dropped).toBe(1);
    expect(t.stack.stats.icmp.v4.packetsSent.echoReply).toBe(0);
  });

  it("fragments a reply to an unfragmented request without DF", () => {
    const t = testStack({ mtu: 1500 });
    t.link.inject(v4Echo({ payload: payloadOf(2000), flags: 0 }));
    const out = t.link.drain();
    expect(out.length).toBe(2);
    expect(reassembleV4(out).length).toBe(2028);
  });

  it("counts the fragments not written when the link fails midway", () => {
    const t = testStack({ mtu: 1500 });
    let writes = 0;
    const link = t.link;
    const write = link.writePacket.bind(link);
    link.writePacket = (p) => (++writes > 2 ? { kind: "wouldBlock", message: "full" } : write(p));
    link.inject(...pingV4().frags);
    const s = t.stack.stats.ipv4;
    expect(s.packetsSent).toBe(2);
    expect(s.outgoingPacketErrors).toBe(4);
    expect(t.stack.stats.icmp.v4.packetsSent.dropped).toBe(1);
  });
});

describe("IPv6 fragmentation", () => {
  it("sends a reply larger than the MTU with Fragment headers that reassemble to the reply", () => {
    const t = testStack({ mtu: 1500 });
    const request = v6Echo({ payload: payloadOf(8000) });
    t.link.inject(...fragmentV6(request, evenPieces(8008, 1448)));
    const out = t.link.drain();
    expect(out.length).toBe(6);
    const id = v6FragmentId(out[0]);
    for (const f of out) {
      expect(f.length).toBeLessThanOrEqual(1500);
      expect(f[6]).toBe(44);
      expect(f[40]).toBe(58);
      expect(v6FragmentId(f)).toBe(id);
      expect(new IPv6Header(f).payloadLength).toBe(f.length - 40);
    }
    const reply = reassembleV6(out);
    const ip = new IPv6Header(reply);
    const msg = reply.subarray(40);
    expect(msg.length).toBe(8008);
    expect(msg[0]).toBe(129);
    expect(
      checksum(msg, pseudoHeaderChecksum(58, ip.sourceAddress, ip.destinationAddress, msg.length)),
    ).toBe(0xffff);
    const s = t.stack.stats.ipv6;
    expect(s.packetsSent).toBe(6);
    expect(s.fragmentsSent).toBe(6);
    expect(s.packetsFragmented).toBe(1);
    expect(s.packetsReassembled).toBe(1);
  });

  it("gives each fragmented packet a new Identification", () => {
    const t = testStack({ mtu: 1500 });
    const request = v6Echo({ payload: payloadOf(3000) });
    t.link.inject(...fragmentV6(request, evenPieces(3008, 1448), 1));
    t.link.inject(...fragmentV6(request, evenPieces(3008, 1448), 2));
    const out = t.link.drain();
    expect(out.length).toBe(6);
    expect(v6FragmentId(out[3])).toBe((v6FragmentId(out[0]) + 1) >>> 0);
  });
});
