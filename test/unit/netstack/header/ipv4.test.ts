import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseAddress } from "../../../../src/netstack/address.js";
import {
  checksum,
  checksumUpdate16,
  checksumUpdateBytes,
} from "../../../../src/netstack/header/checksum.js";
import {
  encodeIPv4,
  IPV4_FLAG_DF,
  IPV4_FLAG_MF,
  IPV4_MIN_SIZE,
  IPV4_PROTOCOL_ICMP,
  type IPv4Fields,
  IPv4Header,
  parseIPv4Fields,
} from "../../../../src/netstack/header/ipv4.js";
import { v4EchoReply, v4EchoRequest } from "./vectors.js";

const addr4 = (): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: 4, maxLength: 4 });

/** Fields of a header that fits: options padded to a multiple of 4 so they round-trip as given. */
const ipv4Fields = (): fc.Arbitrary<IPv4Fields> =>
  fc.record({
    tos: fc.integer({ min: 0, max: 255 }),
    totalLength: fc.integer({ min: 60, max: 0xffff }),
    id: fc.integer({ min: 0, max: 0xffff }),
    flags: fc.integer({ min: 0, max: 7 }),
    fragmentOffset: fc.integer({ min: 0, max: 0x1fff }).map((u) => u * 8),
    ttl: fc.integer({ min: 0, max: 255 }),
    protocol: fc.integer({ min: 0, max: 255 }),
    srcAddr: addr4(),
    dstAddr: addr4(),
    options: fc.option(
      fc
        .integer({ min: 1, max: 10 })
        .chain((words) => fc.uint8Array({ minLength: words * 4, maxLength: words * 4 })),
      { nil: undefined },
    ),
  });

function encode(f: IPv4Fields): IPv4Header {
  return encodeIPv4(new Uint8Array(60), 0, f);
}

describe("IPv4Header on real kernel packets", () => {
  it("reads every field of the kernel's Echo Request", () => {
    const pkt = v4EchoRequest();
    const h = new IPv4Header(pkt);
    expect(h.isValid(pkt.length)).toBe(true);
    expect(h.version).toBe(4);
    expect(h.ihl).toBe(20);
    expect(h.tos).toBe(0x28);
    expect(h.totalLength).toBe(84);
    expect(h.id).toBe(55633);
    expect(h.flags).toBe(IPV4_FLAG_DF);
    expect(h.dontFragment).toBe(true);
    expect(h.moreFragments).toBe(false);
    expect(h.fragmentOffset).toBe(0);
    expect(h.ttl).toBe(64);
    expect(h.protocol).toBe(IPV4_PROTOCOL_ICMP);
    expect(h.checksum).toBe(0xd507);
    expect(h.sourceAddress).toEqual(parseAddress("198.18.0.1"));
    expect(h.destinationAddress).toEqual(parseAddress("198.18.0.2"));
    expect(h.options().length).toBe(0);
    expect(h.payload()).toEqual(pkt.subarray(20, 84));
  });

  it("reads every field of the kernel's Echo Reply", () => {
    const pkt = v4EchoReply();
    const h = new IPv4Header(pkt);
    expect(h.isValid(pkt.length)).toBe(true);
    expect(h.tos).toBe(0x28);
    expect(h.totalLength).toBe(84);
    expect(h.id).toBe(52257);
    expect(h.flags).toBe(0);
    expect(h.ttl).toBe(64);
    expect(h.checksum).toBe(0x2238);
    expect(h.sourceAddress).toEqual(parseAddress("198.18.0.2"));
    expect(h.destinationAddress).toEqual(parseAddress("198.18.0.1"));
  });

  it("validates the kernel's header checksums and recomputes them exactly", () => {
    for (const pkt of [v4EchoRequest(), v4EchoReply()]) {
      const h = new IPv4Header(pkt);
      expect(h.isChecksumValid()).toBe(true);
      expect(checksum(pkt, 0, 0, 20)).toBe(0xffff);
      expect(h.calculateChecksum()).toBe(h.checksum);
    }
  });

  it("detects a corrupted header through its checksum", () => {
    const pkt = v4EchoRequest();
    pkt[8] ^= 0x01;
    expect(new IPv4Header(pkt).isChecksumValid()).toBe(false);
  });

  it("re-encodes the kernel's Echo Request byte for byte from its parsed fields", () => {
    const pkt = v4EchoRequest();
    const f = parseIPv4Fields(new IPv4Header(pkt));
    f.checksum = undefined;
    const out = new Uint8Array(20);
    encodeIPv4(out, 0, f);
    expect(out).toEqual(pkt.subarray(0, 20));
  });
});

describe("IPv4Header views", () => {
  it("returns addresses, options and payload as views into the packet, not copies", () => {
    const pkt = v4EchoRequest();
    const h = new IPv4Header(pkt);
    h.sourceAddress[3] = 9;
    h.payload()[0] = 0xee;
    expect(pkt[15]).toBe(9);
    expect(pkt[20]).toBe(0xee);
    expect(h.payload().buffer).toBe(pkt.buffer);
  });

  it("reads a header at a non-zero offset", () => {
    const pkt = v4EchoRequest();
    const buf = new Uint8Array(7 + pkt.length).fill(0xaa);
    buf.set(pkt, 7);
    const h = new IPv4Header(buf, 7);
    expect(h.isValid(pkt.length)).toBe(true);
    expect(h.isChecksumValid()).toBe(true);
    expect(h.destinationAddress).toEqual(parseAddress("198.18.0.2"));
    expect(h.payload()).toEqual(pkt.subarray(20));
  });

  it("counts IHL and the fragment offset in bytes", () => {
    const h = new IPv4Header(new Uint8Array(20));
    h.ihl = 24;
    h.fragmentOffset = 1480;
    expect(h.bytes[0] & 0x0f).toBe(6);
    expect(h.ihl).toBe(24);
    expect(((h.bytes[6] & 0x1f) << 8) | h.bytes[7]).toBe(185);
    expect(h.fragmentOffset).toBe(1480);
  });

  it("keeps the flags in the top three bits of the fragment word (MF = 1, DF = 2)", () => {
    const h = new IPv4Header(new Uint8Array(20));
    h.fragmentOffset = 0x1fff * 8;
    h.moreFragments = true;
    expect(h.bytes[6]).toBe(0x3f);
    h.dontFragment = true;
    h.moreFragments = false;
    expect(h.bytes[6]).toBe(0x5f);
    expect(h.flags).toBe(IPV4_FLAG_DF);
    h.flags = IPV4_FLAG_MF | IPV4_FLAG_DF;
    expect(h.fragmentOffset).toBe(0x1fff * 8);
  });

  it("writes each field without disturbing the others", () => {
    fc.assert(
      fc.property(
        ipv4Fields(),
        ipv4Fields(),
        fc.constantFrom("tos", "totalLength", "id", "flags", "fragmentOffset", "ttl", "protocol"),
        (base, other, key) => {
          const h = encode(base);
          h[key] = other[key];
          const expected: IPv4Fields = { ...parseIPv4Fields(encode(base)), [key]: other[key] };
          expect(parseIPv4Fields(h)).toEqual(expected);
        },
      ),
    );
  });

  it("swaps source and destination in place, at any offset, touching nothing else", () => {
    fc.assert(
      fc.property(ipv4Fields(), fc.integer({ min: 0, max: 9 }), (f, at) => {
        const buf = new Uint8Array(at + 60).fill(0x5a);
        buf.set(encode(f).bytes.subarray(0, 60), at);
        const before = buf.slice();
        const h = new IPv4Header(buf, at);
        h.swapAddresses();
        expect(parseIPv4Fields(h)).toEqual({
          ...parseIPv4Fields(new IPv4Header(before, at)),
          srcAddr: f.dstAddr,
          dstAddr: f.srcAddr,
        });
        h.swapAddresses();
        expect(buf).toEqual(before);
      }),
    );
  });

  it("refuses to write an address that is not 4 bytes", () => {
    const h = new IPv4Header(new Uint8Array(20));
    expect(() => h.setSourceAddress(new Uint8Array(16))).toThrow(RangeError);
    expect(() => h.setDestinationAddress(new Uint8Array(3))).toThrow(RangeError);
  });
});

describe("IPv4Header.isValid", () => {
  const valid = (): Uint8Array => v4EchoRequest();

  it("accepts a well-formed packet", () => {
    expect(new IPv4Header(valid()).isValid(84)).toBe(true);
  });

  it("rejects a buffer shorter than 20 bytes", () => {
    expect(new IPv4Header(valid().subarray(0, 19)).isValid(19)).toBe(false);
  });

  it("rejects a version other than 4", () => {
    const p = valid();
    p[0] = 0x65;
    expect(new IPv4Header(p).isValid(84)).toBe(false);
  });

  it("rejects an IHL below 20 bytes", () => {
    const p = valid();
    p[0] = 0x44;
    expect(new IPv4Header(p).isValid(84)).toBe(false);
  });

  it("rejects a total length below the header length", () => {
    const p = valid();
    p[0] = 0x46; // IHL 24
    p[2] = 0;
    p[3] = 20;
    expect(new IPv4Header(p).isValid(84)).toBe(false);
  });

  it("rejects a total length beyond the packet size", () => {
    expect(new IPv4Header(valid()).isValid(83)).toBe(false);
  });

  it("rejects a total length beyond the buffer even if packetSize claims more", () => {
    expect(new IPv4Header(valid().subarray(0, 80)).isValid(84)).toBe(false);
  });
});

describe("IPv4 encoding and checksum properties", () => {
  it("fills a checksum with which the header sums to 0xffff", () => {
    fc.assert(
      fc.property(ipv4Fields(), (f) => {
        const h = encode(f);
        expect(checksum(h.bytes, 0, 0, h.ihl)).toBe(0xffff);
        expect(h.isChecksumValid()).toBe(true);
      }),
    );
  });

  it("round-trips encode → view → parseIPv4Fields", () => {
    fc.assert(
      fc.property(ipv4Fields(), (f) => {
        const h = encode(f);
        expect(parseIPv4Fields(h)).toEqual({ ...f, checksum: h.calculateChecksum() });
        expect(h.version).toBe(4);
        expect(h.ihl).toBe(20 + (f.options?.length ?? 0));
      }),
    );
  });

  it("writes a given checksum verbatim instead of computing one", () => {
    const h = encodeIPv4(new Uint8Array(20), 0, {
      tos: 0,
      totalLength: 20,
      id: 1,
      flags: 0,
      fragmentOffset: 0,
      ttl: 64,
      protocol: 1,
      srcAddr: parseAddress("198.18.0.1")!,
      dstAddr: parseAddress("198.18.0.2")!,
      checksum: 0x1234,
    });
    expect(h.checksum).toBe(0x1234);
  });

  it("pads options with zeros (End of Option List) to a multiple of 4 bytes", () => {
    const buf = new Uint8Array(60).fill(0xcc);
    const h = encodeIPv4(buf, 0, {
      tos: 0,
      totalLength: 28,
      id: 0,
      flags: 0,
      fragmentOffset: 0,
      ttl: 1,
      protocol: 1,
      srcAddr: new Uint8Array(4),
      dstAddr: new Uint8Array(4),
      options: Uint8Array.of(0x94, 0x04, 0x00), // Router Alert, one byte short
    });
    expect(h.ihl).toBe(24);
    expect(h.options()).toEqual(Uint8Array.of(0x94, 0x04, 0x00, 0x00));
    expect(buf[24]).toBe(0xcc);
    expect(h.isChecksumValid()).toBe(true);
  });

  it("refuses options longer than 40 bytes and a buffer too small for the header", () => {
    const f: IPv4Fields = {
      tos: 0,
      totalLength: 64,
      id: 0,
      flags: 0,
      fragmentOffset: 0,
      ttl: 1,
      protocol: 1,
      srcAddr: new Uint8Array(4),
      dstAddr: new Uint8Array(4),
    };
    expect(() => encodeIPv4(new Uint8Array(80), 0, { ...f, options: new Uint8Array(41) })).toThrow(
      RangeError,
    );
    expect(() => encodeIPv4(new Uint8Array(30), 12, f)).toThrow(RangeError);
  });

  it("updates the checksum incrementally (RFC 1624) exactly as recomputation does", () => {
    fc.assert(
      fc.property(
        ipv4Fields(),
        fc.integer({ min: 0, max: 255 }),
        addr4(),
        addr4(),
        fc.integer({ min: 0, max: 0xffff }),
        (f, ttl, src, dst, id) => {
          const h = encode(f);
          // TTL shares its word with Protocol.
          let field = checksumUpdate16(
            h.checksum,
            (h.ttl << 8) | h.protocol,
            (ttl << 8) | h.protocol,
          );
          h.ttl = ttl;
          field = checksumUpdateBytes(field, h.sourceAddress.slice(), src);
          h.setSourceAddress(src);
          field = checksumUpdateBytes(field, h.destinationAddress.slice(), dst);
          h.setDestinationAddress(dst);
          field = checksumUpdate16(field, h.id, id);
          h.id = id;
          expect(field).toBe(h.calculateChecksum());
        },
      ),
    );
  });
});

describe("IPv4Header bounds", () => {
  it("never throws on arbitrary bytes, and isValid(false) for anything malformed", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), fc.nat(200), (b, size) => {
        const h = new IPv4Header(b);
        const ok = h.isValid(size);
        if (b.length < IPV4_MIN_SIZE) expect(ok).toBe(false);
        if (ok) expect(h.payload().length).toBe(h.totalLength - h.ihl);
        expect(() => [h.options(), h.payload(), h.isChecksumValid()]).not.toThrow();
      }),
    );
  });

  it("keeps every view inside both the buffer and Total Length", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: IPV4_MIN_SIZE, maxLength: 120 }), (content) => {
        // The view's buffer is a window into a larger one filled with a sentinel.
        const backing = new Uint8Array(content.length + 64).fill(0xee);
        backing.set(content, 32);
        const window = backing.subarray(32, 32 + content.length);
        const h = new IPv4Header(window);
        const end = (v: Uint8Array): number => v.byteOffset + v.length;
        const viewEnd = window.byteOffset + window.length;
        for (const v of [h.sourceAddress, h.destinationAddress, h.options(), h.payload()]) {
          expect(v.byteOffset).toBeGreaterThanOrEqual(window.byteOffset);
          expect(end(v)).toBeLessThanOrEqual(viewEnd);
        }
        expect(end(h.payload())).toBeLessThanOrEqual(
          window.byteOffset + Math.max(h.ihl, h.totalLength),
        );
        expect(end(h.options())).toBeLessThanOrEqual(window.byteOffset + Math.max(20, h.ihl));
        for (const n of [h.version, h.ihl, h.tos, h.totalLength, h.id, h.flags, h.fragmentOffset]) {
          expect(Number.isInteger(n)).toBe(true);
        }
        for (const n of [h.ttl, h.protocol, h.checksum, h.calculateChecksum()]) {
          expect(Number.isInteger(n)).toBe(true);
        }
      }),
    );
  });
});
