/**
 * Byte for byte with gVisor master: one case per difference the differential test found, each
 * with a positive control (the same packet with the deciding field changed gets the normal
 * answer). The gVisor function each rule comes from is named in the case.
 */
import { describe, expect, it } from "vitest";
import { Subnet } from "../../src/netstack/address.js";
import { IPV4_PROTOCOL_NUMBER } from "../../src/netstack/buffer.js";
import { isTcpipError } from "../../src/netstack/errors.js";
import { checksum } from "../../src/netstack/header/checksum.js";
import { IPV4_FLAG_DF, IPv4Header } from "../../src/netstack/header/ipv4.js";
import { evenPieces, fragmentV4, fragmentV6 } from "../helpers/fragments.js";
import {
  optionsHeader,
  parseICMPv4Error,
  parseICMPv6Error,
  v4Datagram,
  v6Chain,
} from "../helpers/ip-packets.js";
import { addr, payloadOf, v4Echo, v6Echo } from "../helpers/packets.js";
import { NIC_ID, type TestStack, testStack } from "../helpers/stack.js";

const UDP = 17;

function one(t: TestStack): Uint8Array {
  const out = t.link.drain();
  expect(out.length).toBe(1);
  return out[0];
}

/** The Echo Reply gVisor's sendICMPEchoReply builds from `request` (no options). */
function expectedV4Reply(request: Uint8Array): Uint8Array {
  const r = request.slice();
  const h = new IPv4Header(r);
  h.swapAddresses();
  h.ttl = 64;
  h.checksum = 0;
  h.checksum = h.calculateChecksum();
  const msg = r.subarray(h.ihl);
  msg[0] = 0;
  msg[2] = 0;
  msg[3] = 0;
  const c = ~checksum(msg) & 0xffff;
  msg[2] = c >> 8;
  msg[3] = c & 0xff;
  return r;
}

describe("Echo Reply IP ID (ipv4/icmp.go sendICMPEchoReply: writePacket, no ID fix-up)", () => {
  it("copies IP ID 0 with DF clear, byte for byte", () => {
    const t = testStack();
    const request = v4Echo({ id: 0, flags: 0 });
    // Computed first: the fast path builds the reply in place over the injected bytes.
    const expected = expectedV4Reply(request);
    t.link.inject(request);
    const reply = one(t);
    expect(new IPv4Header(reply).id).toBe(0);
    expect([...reply]).toEqual([...expected]);
  });

  it("control: a non-zero ID is copied the same way", () => {
    const t = testStack();
    const request = v4Echo({ id: 0x0102, flags: 0 });
    const expected = expectedV4Reply(request);
    t.link.inject(request);
    expect([...one(t)]).toEqual([...expected]);
  });
});

describe("ICMPv4 errors quote the header as gVisor rewrote it, checksum as received (ipv4.go deliverPacketLocally, icmp.go returnError)", () => {
  // Record Route with room for one address: receive usage records 198.18.0.2 in place.
  const rr = new Uint8Array([7, 7, 4, 0, 0, 0, 0, 0]);

  it("options processed in place: the quote has this host recorded and the old checksum", () => {
    const t = testStack();
    const d = v4Datagram({ protocol: UDP, options: rr });
    t.link.inject(d);
    const e = parseICMPv4Error(one(t));
    expect([e.type, e.code]).toEqual([3, 2]);
    const expected = d.slice();
    expected.set([7, 7, 8, 198, 18, 0, 2, 0], 20);
    expect([...e.quoted]).toEqual([...expected]);
    expect(new IPv4Header(e.quoted).isChecksumValid()).toBe(false);
  });

  it("control: without options the quote is the datagram, checksum valid", () => {
    const t = testStack();
    const d = v4Datagram({ protocol: UDP });
    t.link.inject(d);
    const e = parseICMPv4Error(one(t));
    expect([...e.quoted]).toEqual([...d]);
    expect(new IPv4Header(e.quoted).isChecksumValid()).toBe(true);
  });

  it("after reassembly: total length and flags set, the first fragment's checksum kept", () => {
    const t = testStack();
    const d = v4Datagram({ protocol: UDP, payload: payloadOf(48), flags: 0 });
    const frags = fragmentV4(d, evenPieces(48, 24));
    t.link.inject(...frags);
    const e = parseICMPv4Error(one(t));
    expect([e.type, e.code]).toEqual([3, 2]);
    const expected = d.slice();
    expected[10] = frags[0][10];
    expected[11] = frags[0][11];
    expect([...e.quoted]).toEqual([...expected]);
    expect(new IPv4Header(e.quoted).isChecksumValid()).toBe(false);
  });

  it("control: the same datagram unfragmented is quoted as sent", () => {
    const t = testStack();
    const d = v4Datagram({ protocol: UDP, payload: payloadOf(48), flags: 0 });
    t.link.inject(d);
    expect([...parseICMPv4Error(one(t)).quoted]).toEqual([...d]);
  });
});

describe("ICMPv6 errors about a reassembled packet quote the first fragment's headers (fragmentation/reassembler.go process)", () => {
  /**
   * Sends `p` in fragments of `size` bytes; returns the one error written (type, code,
   * pointer) and the first fragment's headers (fixed + Fragment: 48 bytes) it should quote.
   */
  function afterReassembly(p: Uint8Array, size: number) {
    const t = testStack();
    const frags = fragmentV6(p, evenPieces(p.length - 40, size));
    t.link.inject(...frags);
    const e = parseICMPv6Error(one(t));
    return { e, fields: [e.type, e.code, e.pointer], headers: [...frags[0].subarray(0, 48)] };
  }

  it("unknown Next Header: first fragment's fixed and Fragment headers, then the merged data; pointer 6", () => {
    const r = afterReassembly(v6Chain({ upper: UDP, upperBytes: payloadOf(64) }), 32);
    expect(r.fields).toEqual([4, 1, 6]);
    expect([...r.e.quoted]).toEqual([...r.headers, ...payloadOf(64)]);
  });

  it("unknown Next Header after a Destination Options header: that header is consumed from the quote", () => {
    const p = v6Chain({
      headers: [optionsHeader(60, [1, 0])],
      upper: UDP,
      upperBytes: payloadOf(56),
    });
    const r = afterReassembly(p, 32);
    expect(r.fields).toEqual([4, 1, 40]);
    expect([...r.e.quoted]).toEqual([...r.headers, ...payloadOf(56)]);
  });

  it("unknown option after the Fragment header: the whole reassembled packet, pointer from 40", () => {
    // Option type 0x87: high bits 10, discard and send Parameter Problem code 2.
    const p = v6Chain({ headers: [optionsHeader(60, [0x87, 0])] });
    const r = afterReassembly(p, 16);
    expect(r.fields).toEqual([4, 2, 42]);
    expect([...r.e.quoted]).toEqual([...r.headers, ...p.subarray(40)]);
  });

  it("control: the same packets unfragmented are quoted as sent, same pointers", () => {
    const t = testStack();
    const a = v6Chain({ upper: UDP, upperBytes: payloadOf(64) });
    const b = v6Chain({
      headers: [optionsHeader(60, [1, 0])],
      upper: UDP,
      upperBytes: payloadOf(56),
    });
    const c = v6Chain({ headers: [optionsHeader(60, [0x87, 0])] });
    t.link.inject(a, b, c);
    const out = t.link.drain().map(parseICMPv6Error);
    expect(out.map((e) => [e.code, e.pointer])).toEqual([
      [1, 6],
      [1, 40],
      [2, 42],
    ]);
    expect([...out[0].quoted]).toEqual([...a]);
    expect([...out[1].quoted]).toEqual([...b]);
    expect([...out[2].quoted]).toEqual([...c]);
  });
});

describe("no ICMPv4 error about a fragment of an ICMP datagram (icmp.go returnError: fewer than 8 bytes of parsed ICMP)", () => {
  const badTimestamp = new Uint8Array([68, 3, 5, 0]);

  it("no Time Exceeded when an Echo Request's reassembly times out", () => {
    const t = testStack();
    const [first] = fragmentV4(v4Echo({ payload: payloadOf(72), flags: 0 }), evenPieces(80, 40));
    t.link.inject(first);
    t.clock.advance(30_000);
    expect(t.stack.sweepFragments()).toBe(1);
    expect(t.link.drain()).toEqual([]);
  });

  it("control: a UDP datagram's first fragment gets Time Exceeded code 1", () => {
    const t = testStack();
    const d = v4Datagram({ protocol: UDP, payload: payloadOf(80), flags: 0 });
    const [first] = fragmentV4(d, evenPieces(80, 40));
    t.link.inject(first);
    t.clock.advance(30_000);
    t.stack.sweepFragments();
    const e = parseICMPv4Error(one(t));
    expect([e.type, e.code]).toEqual([11, 1]);
    expect([...e.quoted]).toEqual([...first]);
  });

  it("no Parameter Problem for a bad option in an Echo Request's fragment zero", () => {
    const t = testStack();
    const request = v4Echo({ payload: payloadOf(72), flags: 0, options: badTimestamp });
    t.link.inject(fragmentV4(request, evenPieces(80, 40))[0]);
    expect(t.link.drain()).toEqual([]);
    expect(t.stack.stats.ipv4.malformedPacketsReceived).toBe(1);
  });

  it("control: a UDP datagram's fragment zero with that option gets Parameter Problem", () => {
    const t = testStack();
    const d = v4Datagram({
      protocol: UDP,
      payload: payloadOf(80),
      flags: 0,
      options: badTimestamp,
    });
    t.link.inject(fragmentV4(d, evenPieces(80, 40))[0]);
    const e = parseICMPv4Error(one(t));
    // Timestamp length 3 < 4: the pointer names the length octet.
    expect([e.type, e.pointer]).toEqual([12, 21]);
  });
});

describe("transports gVisor registers but icmpfwd does not implement are silent", () => {
  it("IGMP (protocol 2) is taken by handleIGMP: no Protocol Unreachable", () => {
    const t = testStack();
    t.link.inject(v4Datagram({ protocol: 2, payload: payloadOf(8) }));
    expect(t.link.drain()).toEqual([]);
    expect(t.stack.stats.ipv4.otherTransportPacketsReceived).toBe(1);
    expect(t.stack.stats.ipv4.unknownProtocolRcvdPackets).toBe(0);
  });

  it("IGMP options are still processed first: a bad one gets Parameter Problem", () => {
    const t = testStack();
    t.link.inject(
      v4Datagram({ protocol: 2, payload: payloadOf(8), options: new Uint8Array([68, 3, 5, 0]) }),
    );
    expect(parseICMPv4Error(one(t)).type).toBe(12);
  });

  it("IPv4 protocol 58 reaches the ICMPv6 transport (HandleUnknownDestinationPacket: handled)", () => {
    const t = testStack();
    t.link.inject(v4Datagram({ protocol: 58 }));
    expect(t.link.drain()).toEqual([]);
    expect(t.stack.stats.ipv4.otherTransportPacketsReceived).toBe(1);
  });

  it("control: IPv4 protocol 3 gets Protocol Unreachable", () => {
    const t = testStack();
    t.link.inject(v4Datagram({ protocol: 3 }));
    const e = parseICMPv4Error(one(t));
    expect([e.type, e.code]).toEqual([3, 2]);
  });

  it("IPv6 next header 1 reaches the ICMPv4 transport: no Parameter Problem", () => {
    const t = testStack();
    t.link.inject(v6Chain({ upper: 1, upperBytes: payloadOf(16) }));
    expect(t.link.drain()).toEqual([]);
    expect(t.stack.stats.ipv6.otherTransportPacketsReceived).toBe(1);
  });

  it("control: IPv6 next header 2 gets Parameter Problem code 1", () => {
    const t = testStack();
    t.link.inject(v6Chain({ upper: 2, upperBytes: payloadOf(16) }));
    const e = parseICMPv6Error(one(t));
    expect([e.type, e.code, e.pointer]).toEqual([4, 1, 6]);
  });
});

describe("a fragment that is a strict subset of one received abandons the datagram (reassembler.go process, June 2026)", () => {
  const request = () => v4Echo({ payload: payloadOf(72), flags: 0 });

  it("IPv4: the rest of the datagram is not answered", () => {
    const t = testStack();
    const [a, b] = fragmentV4(request(), evenPieces(80, 40));
    const [subset] = fragmentV4(request(), [{ offset: 8, length: 16, more: true }]);
    t.link.inject(a, subset, b);
    expect(t.link.drain()).toEqual([]);
    expect(t.stack.stats.ipv4.reassemblyOverlaps).toBe(1);
  });

  it("IPv4 control: an exact duplicate is ignored and the datagram answered", () => {
    const t = testStack();
    const [a, b] = fragmentV4(request(), evenPieces(80, 40));
    t.link.inject(a, a, b);
    expect(one(t)[20]).toBe(0);
    expect(t.stack.stats.ipv4.reassemblyOverlaps).toBe(0);
  });

  it("IPv6: the rest of the packet is not answered", () => {
    const t = testStack();
    const p = v6Echo({ payload: payloadOf(72) });
    const [a, b] = fragmentV6(p, evenPieces(80, 40));
    const [subset] = fragmentV6(p, [{ offset: 8, length: 16, more: true }]);
    t.link.inject(a, subset, b);
    expect(t.link.drain()).toEqual([]);
    expect(t.stack.stats.ipv6.reassemblyOverlaps).toBe(1);
  });

  it("IPv6 control: an exact duplicate is ignored and the packet answered", () => {
    const t = testStack();
    const [a, b] = fragmentV6(v6Echo({ payload: payloadOf(72) }), evenPieces(80, 40));
    t.link.inject(a, a, b);
    expect(one(t)[40]).toBe(129);
  });
});

describe("IPv6 with an IPv4-mapped address is dropped (ipv6.go checkV4Mapped, RFC 6890)", () => {
  /** A stack with a default IPv6 route, so that any source has a route back. */
  function routed(): TestStack {
    const t = testStack();
    const all = Subnet.parse("::/0");
    if (all === null) throw new Error("::/0");
    expect(t.stack.addRoute(all, NIC_ID)).toBeNull();
    return t;
  }

  it("an IPv4-mapped source", () => {
    const t = routed();
    t.link.inject(v6Echo({ src: "::ffff:198.18.0.1" }));
    expect(t.link.drain()).toEqual([]);
    expect(t.stack.stats.ipv6.invalidSourceAddressesReceived).toBe(1);
  });

  it("an IPv4-mapped destination, even in promiscuous mode", () => {
    const t = routed();
    t.stack.setPromiscuousMode(NIC_ID, true);
    t.link.inject(v6Echo({ dst: "::ffff:198.18.0.2" }));
    expect(t.link.drain()).toEqual([]);
    expect(t.stack.stats.ipv6.invalidDestinationAddressesReceived).toBe(1);
  });

  it("control: an off-link source with a route back is answered", () => {
    const t = routed();
    t.link.inject(v6Echo({ src: "fd00:2::1" }));
    expect(one(t)[40]).toBe(129);
  });
});

describe("IPv4 option 30 (experiment) must be 4 bytes (header/ipv4.go IPv4OptionIterator.Next, Dec 2024)", () => {
  it("length 3: Parameter Problem at the length octet", () => {
    const t = testStack();
    t.link.inject(v4Echo({ options: new Uint8Array([30, 3, 0, 1]) }));
    const e = parseICMPv4Error(one(t));
    expect([e.type, e.pointer]).toEqual([12, 21]);
  });

  it("control: length 4 is an unknown option, left out of the Echo Reply", () => {
    const t = testStack();
    t.link.inject(v4Echo({ options: new Uint8Array([30, 4, 0, 1]) }));
    const reply = one(t);
    expect(new IPv4Header(reply).ihl).toBe(20);
    expect(reply[20]).toBe(0);
    expect(t.stack.stats.ipv4.optionUnknownReceived).toBe(1);
  });
});

describe("IPv4 source selection (stack/addressable_endpoint_state.go acquirePrimaryAddressRLocked)", () => {
  function twoAddresses(): TestStack {
    const t = testStack();
    expect(t.stack.addAddress(NIC_ID, addr("198.19.0.2"), 24)).toBeNull();
    const net = Subnet.parse("198.19.128.0/17");
    if (net === null) throw new Error("subnet");
    expect(t.stack.addRoute(net, NIC_ID)).toBeNull();
    return t;
  }
  const source = (t: TestStack, remote: string): string => {
    const r = t.stack.findRoute(NIC_ID, null, addr(remote), IPV4_PROTOCOL_NUMBER);
    if (isTcpipError(r)) throw new Error(r.message);
    return [...r.localAddress].join(".");
  };

  it("the longest matching prefix wins, outside every subnet too", () => {
    expect(source(twoAddresses(), "198.19.200.1")).toBe("198.19.0.2");
  });

  it("control: a remote in the first address's subnet gets the first address", () => {
    expect(source(twoAddresses(), "198.18.0.77")).toBe("198.18.0.2");
  });

  it("DF and ID of an answered request are unaffected by the source choice", () => {
    const t = twoAddresses();
    t.link.inject(v4Echo({ src: "198.19.200.1", dst: "198.18.0.2", flags: IPV4_FLAG_DF }));
    const h = new IPv4Header(one(t));
    expect(h.flags).toBe(IPV4_FLAG_DF);
    expect([...h.sourceAddress].join(".")).toBe("198.18.0.2");
  });
});
