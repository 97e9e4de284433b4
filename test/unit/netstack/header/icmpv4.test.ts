import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checksum, checksumUpdate16 } from "../../../../src/netstack/header/checksum.js";
import {
  encodeICMPv4Echo,
  ICMPV4_DST_UNREACHABLE,
  ICMPV4_ECHO,
  ICMPV4_ECHO_REPLY,
  ICMPV4_FRAG_NEEDED,
  ICMPV4_MIN_SIZE,
  ICMPV4_PARAM_PROBLEM,
  type ICMPv4EchoFields,
  ICMPv4Header,
  parseICMPv4EchoFields,
} from "../../../../src/netstack/header/icmpv4.js";
import { IPv4Header } from "../../../../src/netstack/header/ipv4.js";
import { V4_ECHO_PAYLOAD, v4EchoReply, v4EchoRequest } from "./vectors.js";

/** The ICMP message of an IPv4 packet, as the network layer will hand it over. */
function icmpOf(pkt: Uint8Array): ICMPv4Header {
  const ip = new IPv4Header(pkt);
  return new ICMPv4Header(pkt, ip.ihl, ip.totalLength - ip.ihl);
}

const echoFields = (): fc.Arbitrary<ICMPv4EchoFields> =>
  fc.record({
    type: fc.constantFrom(ICMPV4_ECHO, ICMPV4_ECHO_REPLY),
    code: fc.integer({ min: 0, max: 255 }),
    ident: fc.integer({ min: 0, max: 0xffff }),
    sequence: fc.integer({ min: 0, max: 0xffff }),
    payload: fc.uint8Array({ maxLength: 300 }),
  });

describe("ICMPv4Header on real kernel packets", () => {
  it("reads every field of the kernel's Echo Request", () => {
    const m = icmpOf(v4EchoRequest());
    expect(m.length).toBe(64);
    expect(m.isValid()).toBe(true);
    expect(m.type).toBe(ICMPV4_ECHO);
    expect(m.code).toBe(0);
    expect(m.checksum).toBe(0x0abd);
    expect(m.ident).toBe(3862);
    expect(m.sequence).toBe(1);
    expect(m.payload()).toEqual(V4_ECHO_PAYLOAD);
  });

  it("reads every field of the kernel's Echo Reply", () => {
    const m = icmpOf(v4EchoReply());
    expect(m.type).toBe(ICMPV4_ECHO_REPLY);
    expect(m.code).toBe(0);
    expect(m.checksum).toBe(0x12bd);
    expect(m.ident).toBe(3862);
    expect(m.sequence).toBe(1);
    expect(m.payload()).toEqual(V4_ECHO_PAYLOAD);
  });

  it("computes the ICMP checksum over the whole message", () => {
    for (const pkt of [v4EchoRequest(), v4EchoReply()]) {
      const m = icmpOf(pkt);
      expect(m.isChecksumValid()).toBe(true);
      expect(checksum(pkt, 0, 20, 64)).toBe(0xffff);
      expect(m.calculateChecksum()).toBe(m.checksum);
    }
  });

  it("detects a corrupted payload byte through the checksum", () => {
    const pkt = v4EchoRequest();
    pkt[83] ^= 0x40;
    expect(icmpOf(pkt).isChecksumValid()).toBe(false);
  });

  it("encodes the kernel's Echo Reply byte for byte from the request's fields", () => {
    const request = icmpOf(v4EchoRequest());
    const out = new Uint8Array(64);
    encodeICMPv4Echo(out, 0, { ...parseICMPv4EchoFields(request), type: ICMPV4_ECHO_REPLY });
    expect(out).toEqual(v4EchoReply().subarray(20));
  });

  it("turns the Echo Request into the Echo Reply in place with an incremental update", () => {
    const pkt = v4EchoRequest();
    const m = icmpOf(pkt);
    m.checksum = checksumUpdate16(m.checksum, ICMPV4_ECHO << 8, ICMPV4_ECHO_REPLY << 8);
    m.type = ICMPV4_ECHO_REPLY;
    expect(pkt.subarray(20)).toEqual(v4EchoReply().subarray(20));
  });
});

describe("ICMPv4Header fields", () => {
  it("reads the next-hop MTU of Fragmentation Needed from bytes 6-7", () => {
    const m = new ICMPv4Header(
      Uint8Array.of(ICMPV4_DST_UNREACHABLE, ICMPV4_FRAG_NEEDED, 0, 0, 0, 0, 0x05, 0xdc),
    );
    expect(m.mtu).toBe(1500);
    m.mtu = 1280;
    expect([...m.bytes.subarray(4)]).toEqual([0, 0, 0x05, 0x00]);
  });

  it("reads the Parameter Problem pointer from byte 4", () => {
    const m = new ICMPv4Header(Uint8Array.of(ICMPV4_PARAM_PROBLEM, 0, 0, 0, 20, 0, 0, 0));
    expect(m.pointer).toBe(20);
    m.pointer = 22;
    expect(m.bytes[4]).toBe(22);
    expect(m.ident).toBe(22 << 8);
  });

  it("covers exactly offset..offset+length of a larger buffer", () => {
    const pkt = new Uint8Array(100).fill(0xee);
    const m = encodeICMPv4Echo(pkt, 10, {
      type: ICMPV4_ECHO,
      code: 0,
      ident: 1,
      sequence: 2,
      payload: Uint8Array.of(1, 2, 3),
    });
    expect(m.length).toBe(11);
    expect(m.payload()).toEqual(Uint8Array.of(1, 2, 3));
    expect(pkt[9]).toBe(0xee);
    expect(pkt[21]).toBe(0xee);
    expect(m.isChecksumValid()).toBe(true);
  });

  it("rejects a message shorter than 8 bytes", () => {
    expect(new ICMPv4Header(new Uint8Array(7)).isValid()).toBe(false);
    expect(new ICMPv4Header(new Uint8Array(8)).isValid()).toBe(true);
  });

  it("refuses to encode past the end of the buffer", () => {
    const f = { type: ICMPV4_ECHO, code: 0, ident: 0, sequence: 0, payload: new Uint8Array(10) };
    expect(() => encodeICMPv4Echo(new Uint8Array(17), 0, f)).toThrow(RangeError);
  });
});

describe("a re-pointed ICMPv4Header", () => {
  it("reads and writes the message it was reset to, then lets it go", () => {
    const view = new ICMPv4Header(new Uint8Array(0));
    const request = v4EchoRequest();
    const reply = v4EchoReply();
    expect(view.reset(request, 20).type).toBe(8);
    expect(view.reset(reply, 20).type).toBe(0);
    view.type = 8;
    view.checksum = view.calculateChecksum();
    expect(reply.subarray(20)).toEqual(request.subarray(20));
    view.release();
    expect(view.bytes.length).toBe(0);
    expect(view.length).toBe(0);
  });
});

describe("ICMPv4 properties", () => {
  it("fills a checksum with which the message sums to 0xffff", () => {
    fc.assert(
      fc.property(echoFields(), fc.nat(7), (f, at) => {
        const buf = new Uint8Array(at + ICMPV4_MIN_SIZE + f.payload.length);
        const m = encodeICMPv4Echo(buf, at, f);
        expect(checksum(buf, 0, at, m.length)).toBe(0xffff);
        expect(m.isChecksumValid()).toBe(true);
      }),
    );
  });

  it("round-trips encode → view → parseICMPv4EchoFields", () => {
    fc.assert(
      fc.property(echoFields(), (f) => {
        const m = encodeICMPv4Echo(new Uint8Array(ICMPV4_MIN_SIZE + f.payload.length), 0, f);
        expect(parseICMPv4EchoFields(m)).toEqual(f);
      }),
    );
  });

  it("updates the checksum incrementally as recomputation does for ident and sequence", () => {
    fc.assert(
      fc.property(
        echoFields(),
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffff }),
        (f, ident, sequence) => {
          // Type Echo (8) keeps the covered bytes non-zero: see checksumUpdate16's -0 rule.
          const m = encodeICMPv4Echo(new Uint8Array(8 + f.payload.length), 0, {
            ...f,
            type: ICMPV4_ECHO,
          });
          let field = checksumUpdate16(m.checksum, m.ident, ident);
          m.ident = ident;
          field = checksumUpdate16(field, m.sequence, sequence);
          m.sequence = sequence;
          expect(field).toBe(m.calculateChecksum());
        },
      ),
    );
  });

  it("keeps payload() inside the message and the buffer for any length", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 60 }), fc.nat(70), fc.nat(70), (content, o, l) => {
        const backing = new Uint8Array(content.length + 64).fill(0xee);
        backing.set(content, 32);
        const window = backing.subarray(32, 32 + content.length);
        const offset = o % (content.length + 1);
        const m = new ICMPv4Header(window, offset, l);
        expect(m.length).toBeLessThanOrEqual(window.length - offset);
        const p = m.payload();
        expect(p.byteOffset).toBeGreaterThanOrEqual(window.byteOffset + offset);
        expect(p.byteOffset + p.length).toBeLessThanOrEqual(window.byteOffset + offset + m.length);
        expect(() => [m.isChecksumValid(), m.calculateChecksum(), m.isValid()]).not.toThrow();
      }),
    );
  });
});
