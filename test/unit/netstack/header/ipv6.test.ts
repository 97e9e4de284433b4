import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseAddress } from "../../../../src/netstack/address.js";
import {
  encodeIPv6,
  IPV6_MIN_SIZE,
  IPV6_NEXT_HEADER_ICMPV6,
  type IPv6Fields,
  IPv6Header,
  parseIPv6Fields,
} from "../../../../src/netstack/header/ipv6.js";
import { v6EchoReply, v6EchoRequest } from "./vectors.js";

const addr6 = (): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: 16, maxLength: 16 });

const ipv6Fields = (): fc.Arbitrary<IPv6Fields> =>
  fc.record({
    trafficClass: fc.integer({ min: 0, max: 255 }),
    flowLabel: fc.integer({ min: 0, max: 0xfffff }),
    payloadLength: fc.integer({ min: 0, max: 0xffff }),
    nextHeader: fc.integer({ min: 0, max: 255 }),
    hopLimit: fc.integer({ min: 0, max: 255 }),
    srcAddr: addr6(),
    dstAddr: addr6(),
  });

describe("IPv6Header on real kernel packets", () => {
  it("reads every field of the kernel's Echo Request", () => {
    const pkt = v6EchoRequest();
    const h = new IPv6Header(pkt);
    expect(h.isValid(pkt.length)).toBe(true);
    expect(h.version).toBe(6);
    expect(h.trafficClass).toBe(0x28);
    expect(h.flowLabel).toBe(0x73880);
    expect(h.payloadLength).toBe(64);
    expect(h.nextHeader).toBe(IPV6_NEXT_HEADER_ICMPV6);
    expect(h.hopLimit).toBe(64);
    expect(h.sourceAddress).toEqual(parseAddress("fd00:9::1"));
    expect(h.destinationAddress).toEqual(parseAddress("fd00:9::2"));
    expect(h.payload()).toEqual(pkt.subarray(40, 104));
  });

  it("reads every field of the kernel's Echo Reply", () => {
    const pkt = v6EchoReply();
    const h = new IPv6Header(pkt);
    expect(h.isValid(pkt.length)).toBe(true);
    expect(h.trafficClass).toBe(0x28);
    expect(h.flowLabel).toBe(0xfc104);
    expect(h.payloadLength).toBe(64);
    expect(h.hopLimit).toBe(64);
    expect(h.sourceAddress).toEqual(parseAddress("fd00:9::2"));
    expect(h.destinationAddress).toEqual(parseAddress("fd00:9::1"));
  });

  it("re-encodes the kernel's headers byte for byte from their parsed fields", () => {
    for (const pkt of [v6EchoRequest(), v6EchoReply()]) {
      const out = new Uint8Array(40);
      encodeIPv6(out, 0, parseIPv6Fields(new IPv6Header(pkt)));
      expect(out).toEqual(pkt.subarray(0, 40));
    }
  });
});

describe("IPv6Header views", () => {
  it("returns addresses and payload as views into the packet, not copies", () => {
    const pkt = v6EchoRequest();
    const h = new IPv6Header(pkt);
    h.destinationAddress[15] = 7;
    h.payload()[0] = 0x81;
    expect(pkt[39]).toBe(7);
    expect(pkt[40]).toBe(0x81);
  });

  it("splits Traffic Class across the first two bytes, around the version and flow label", () => {
    const h = new IPv6Header(new Uint8Array(40));
    h.version = 6;
    h.flowLabel = 0xfffff;
    h.trafficClass = 0xa5;
    expect([...h.bytes.subarray(0, 4)]).toEqual([0x6a, 0x5f, 0xff, 0xff]);
    h.trafficClass = 0;
    expect(h.flowLabel).toBe(0xfffff);
    expect(h.version).toBe(6);
  });

  it("writes each field without disturbing the others", () => {
    fc.assert(
      fc.property(
        ipv6Fields(),
        ipv6Fields(),
        fc.constantFrom("trafficClass", "flowLabel", "payloadLength", "nextHeader", "hopLimit"),
        (base, other, key) => {
          const h = encodeIPv6(new Uint8Array(40), 0, base);
          h[key] = other[key];
          expect(parseIPv6Fields(h)).toEqual({ ...base, [key]: other[key] });
          expect(h.version).toBe(6);
        },
      ),
    );
  });

  it("refuses to write an address that is not 16 bytes", () => {
    const h = new IPv6Header(new Uint8Array(40));
    expect(() => h.setSourceAddress(new Uint8Array(4))).toThrow(RangeError);
    expect(() =>
      encodeIPv6(new Uint8Array(39), 0, {
        trafficClass: 0,
        flowLabel: 0,
        payloadLength: 0,
        nextHeader: 59,
        hopLimit: 1,
        srcAddr: new Uint8Array(16),
        dstAddr: new Uint8Array(16),
      }),
    ).toThrow(RangeError);
  });
});

describe("IPv6Header.isValid", () => {
  it("accepts a well-formed packet", () => {
    expect(new IPv6Header(v6EchoRequest()).isValid(104)).toBe(true);
  });

  it("rejects a buffer shorter than 40 bytes", () => {
    expect(new IPv6Header(v6EchoRequest().subarray(0, 39)).isValid(39)).toBe(false);
  });

  it("rejects a version other than 6", () => {
    const p = v6EchoRequest();
    p[0] = 0x42;
    expect(new IPv6Header(p).isValid(104)).toBe(false);
  });

  it("rejects a payload length beyond the packet size", () => {
    expect(new IPv6Header(v6EchoRequest()).isValid(103)).toBe(false);
  });

  it("rejects a payload length beyond the buffer even if packetSize claims more", () => {
    expect(new IPv6Header(v6EchoRequest().subarray(0, 100)).isValid(104)).toBe(false);
  });

  it("accepts trailing bytes after the payload (link padding)", () => {
    const p = new Uint8Array(110);
    p.set(v6EchoRequest());
    expect(new IPv6Header(p).isValid(110)).toBe(true);
    expect(new IPv6Header(p).payload().length).toBe(64);
  });
});

describe("IPv6 properties", () => {
  it("round-trips encode → view → parseIPv6Fields", () => {
    fc.assert(
      fc.property(ipv6Fields(), fc.nat(8), (f, at) => {
        const h = encodeIPv6(new Uint8Array(at + 40), at, f);
        expect(parseIPv6Fields(h)).toEqual(f);
        expect(h.version).toBe(6);
      }),
    );
  });

  it("never throws on arbitrary bytes, and isValid(false) for anything malformed", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), fc.nat(200), (b, size) => {
        const h = new IPv6Header(b);
        const ok = h.isValid(size);
        if (b.length < IPV6_MIN_SIZE) expect(ok).toBe(false);
        if (ok) expect(h.payload().length).toBe(h.payloadLength);
        expect(() => h.payload()).not.toThrow();
      }),
    );
  });

  it("keeps every view inside the buffer and Payload Length", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: IPV6_MIN_SIZE, maxLength: 140 }), (content) => {
        const backing = new Uint8Array(content.length + 64).fill(0xee);
        backing.set(content, 32);
        const window = backing.subarray(32, 32 + content.length);
        const h = new IPv6Header(window);
        const viewEnd = window.byteOffset + window.length;
        for (const v of [h.sourceAddress, h.destinationAddress, h.payload()]) {
          expect(v.byteOffset).toBeGreaterThanOrEqual(window.byteOffset);
          expect(v.byteOffset + v.length).toBeLessThanOrEqual(viewEnd);
        }
        expect(h.payload().length).toBeLessThanOrEqual(h.payloadLength);
        for (const n of [h.version, h.trafficClass, h.flowLabel, h.payloadLength, h.hopLimit]) {
          expect(Number.isInteger(n)).toBe(true);
        }
      }),
    );
  });
});
