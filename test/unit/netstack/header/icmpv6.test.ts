import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseAddress } from "../../../../src/netstack/address.js";
import {
  checksum,
  checksumUpdate16,
  checksumUpdateBytes,
  combine,
  pseudoHeaderChecksum,
} from "../../../../src/netstack/header/checksum.js";
import {
  encodeICMPv6Echo,
  ICMPV6_ECHO_MIN_SIZE,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_PACKET_TOO_BIG,
  ICMPV6_PARAM_PROBLEM,
  type ICMPv6EchoFields,
  ICMPv6Header,
  parseICMPv6EchoFields,
} from "../../../../src/netstack/header/icmpv6.js";
import { IPv6Header } from "../../../../src/netstack/header/ipv6.js";
import { V6_ECHO_PAYLOAD, v6EchoReply, v6EchoRequest } from "./vectors.js";

const addr6 = (): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: 16, maxLength: 16 });

function icmpOf(pkt: Uint8Array): { ip: IPv6Header; m: ICMPv6Header } {
  const ip = new IPv6Header(pkt);
  return { ip, m: new ICMPv6Header(pkt, 40, ip.payloadLength) };
}

const echoFields = (): fc.Arbitrary<ICMPv6EchoFields> =>
  fc.record({
    type: fc.constantFrom(ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY),
    code: fc.integer({ min: 0, max: 255 }),
    ident: fc.integer({ min: 0, max: 0xffff }),
    sequence: fc.integer({ min: 0, max: 0xffff }),
    payload: fc.uint8Array({ maxLength: 300 }),
  });

describe("ICMPv6Header on real kernel packets", () => {
  it("reads every field of the kernel's Echo Request", () => {
    const { m } = icmpOf(v6EchoRequest());
    expect(m.length).toBe(64);
    expect(m.isValid()).toBe(true);
    expect(m.type).toBe(ICMPV6_ECHO_REQUEST);
    expect(m.code).toBe(0);
    expect(m.checksum).toBe(0xa9fc);
    expect(m.ident).toBe(5114);
    expect(m.sequence).toBe(1);
    expect(m.payload()).toEqual(V6_ECHO_PAYLOAD);
    expect(m.messageBody().length).toBe(60);
  });

  it("reads every field of the kernel's Echo Reply", () => {
    const { m } = icmpOf(v6EchoReply());
    expect(m.type).toBe(ICMPV6_ECHO_REPLY);
    expect(m.checksum).toBe(0xa8fc);
    expect(m.ident).toBe(5114);
    expect(m.sequence).toBe(1);
    expect(m.payload()).toEqual(V6_ECHO_PAYLOAD);
  });

  it("computes the ICMPv6 checksum over the pseudo-header and the whole message", () => {
    for (const pkt of [v6EchoRequest(), v6EchoReply()]) {
      const { ip, m } = icmpOf(pkt);
      const src = ip.sourceAddress;
      const dst = ip.destinationAddress;
      expect(m.isChecksumValid(src, dst)).toBe(true);
      expect(combine(pseudoHeaderChecksum(58, src, dst, 64), checksum(pkt, 0, 40, 64))).toBe(
        0xffff,
      );
      expect(m.calculateChecksum(src, dst)).toBe(m.checksum);
    }
  });

  it("fails the checksum when the pseudo-header addresses differ", () => {
    const { ip, m } = icmpOf(v6EchoRequest());
    const other = parseAddress("fd00:9::3")!;
    expect(m.isChecksumValid(ip.sourceAddress, other)).toBe(false);
  });

  it("encodes the kernel's Echo Reply byte for byte from the request's fields", () => {
    const { ip, m } = icmpOf(v6EchoRequest());
    const out = new Uint8Array(64);
    encodeICMPv6Echo(
      out,
      0,
      { ...parseICMPv6EchoFields(m), type: ICMPV6_ECHO_REPLY },
      ip.destinationAddress,
      ip.sourceAddress,
    );
    expect(out).toEqual(v6EchoReply().subarray(40));
  });
});

describe("ICMPv6Header fields", () => {
  it("reads the 32-bit MTU of Packet Too Big from bytes 4-7", () => {
    const m = new ICMPv6Header(Uint8Array.of(ICMPV6_PACKET_TOO_BIG, 0, 0, 0, 0x80, 0, 0x05, 0x00));
    expect(m.mtu).toBe(0x80000500);
    m.mtu = 1280;
    expect([...m.bytes.subarray(4)]).toEqual([0, 0, 0x05, 0x00]);
  });

  it("reads the 32-bit Parameter Problem pointer from bytes 4-7", () => {
    const m = new ICMPv6Header(Uint8Array.of(ICMPV6_PARAM_PROBLEM, 1, 0, 0, 0, 0, 0, 40));
    expect(m.pointer).toBe(40);
  });

  it("rejects a message shorter than 8 bytes", () => {
    expect(new ICMPv6Header(new Uint8Array(7)).isValid()).toBe(false);
  });
});

describe("ICMPv6 properties", () => {
  it("fills a checksum with which pseudo-header and message sum to 0xffff", () => {
    fc.assert(
      fc.property(echoFields(), addr6(), addr6(), (f, src, dst) => {
        const buf = new Uint8Array(ICMPV6_ECHO_MIN_SIZE + f.payload.length);
        const m = encodeICMPv6Echo(buf, 0, f, src, dst);
        expect(combine(pseudoHeaderChecksum(58, src, dst, buf.length), checksum(buf))).toBe(0xffff);
        expect(m.isChecksumValid(src, dst)).toBe(true);
      }),
    );
  });

  it("round-trips encode → view → parseICMPv6EchoFields", () => {
    fc.assert(
      fc.property(echoFields(), addr6(), addr6(), (f, src, dst) => {
        const m = encodeICMPv6Echo(new Uint8Array(8 + f.payload.length), 0, f, src, dst);
        expect(parseICMPv6EchoFields(m)).toEqual(f);
      }),
    );
  });

  it("updates the checksum incrementally as recomputation does for addresses and ident", () => {
    fc.assert(
      fc.property(
        echoFields(),
        addr6(),
        addr6(),
        addr6(),
        fc.integer({ min: 0, max: 0xffff }),
        (f, src, dst, newSrc, ident) => {
          const m = encodeICMPv6Echo(new Uint8Array(8 + f.payload.length), 0, f, src, dst);
          // The pseudo-header is covered too: swapping its source is a byte-run update.
          let field = checksumUpdateBytes(m.checksum, src, newSrc);
          field = checksumUpdate16(field, m.ident, ident);
          m.ident = ident;
          expect(field).toBe(m.calculateChecksum(newSrc, dst));
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
        const m = new ICMPv6Header(window, offset, l);
        for (const v of [m.payload(), m.messageBody()]) {
          expect(v.byteOffset).toBeGreaterThanOrEqual(window.byteOffset + offset);
          expect(v.byteOffset + v.length).toBeLessThanOrEqual(
            window.byteOffset + offset + m.length,
          );
        }
        const zero = new Uint8Array(16);
        expect(() => [
          m.isChecksumValid(zero, zero),
          m.calculateChecksum(zero, zero),
        ]).not.toThrow();
      }),
    );
  });
});
