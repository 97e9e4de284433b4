import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  checksum,
  checksumUpdate16,
  checksumUpdateBytes,
  combine,
  pseudoHeaderChecksum,
} from "../../../../src/netstack/header/checksum.js";
import { hex } from "./vectors.js";

/**
 * An independent definition of the folded ones'-complement sum: end-around-carry addition is
 * addition modulo 0xffff, where a non-zero total that is a multiple of 0xffff reads 0xffff.
 */
function referenceSum(bytes: Uint8Array, initial = 0): number {
  let total = initial;
  for (let i = 0; i < bytes.length; i += 2) total += (bytes[i] << 8) | (bytes[i + 1] ?? 0);
  if (total === 0) return 0;
  const r = total % 0xffff;
  return r === 0 ? 0xffff : r;
}

const bytes = (maxLength = 300): fc.Arbitrary<Uint8Array> =>
  fc.uint8Array({ minLength: 0, maxLength });
const evenBytes = (maxLength = 300): fc.Arbitrary<Uint8Array> =>
  bytes(maxLength).map((b) => (b.length % 2 === 0 ? b : b.subarray(1)));
const address = (): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    fc.uint8Array({ minLength: 4, maxLength: 4 }),
    fc.uint8Array({ minLength: 16, maxLength: 16 }),
  );

describe("checksum (RFC 1071)", () => {
  it("sums big-endian 16-bit words with end-around carry (RFC 1071 §3 example)", () => {
    // 0001 + f203 + f4f5 + f6f7 = 2ddf0, folded: ddf0 + 2 = ddf2.
    expect(checksum(hex("0001 f203 f4f5 f6f7"))).toBe(0xddf2);
  });

  it("pads an odd length with a zero byte", () => {
    expect(checksum(hex("0102 03"))).toBe(0x0102 + 0x0300);
    expect(checksum(hex("ff"))).toBe(0xff00);
  });

  it("returns the sum, not its complement", () => {
    expect(checksum(new Uint8Array(0))).toBe(0);
    expect(checksum(hex("0000 0000"))).toBe(0);
    expect(checksum(hex("1234"))).toBe(0x1234);
  });

  it("agrees with the modulo-0xffff definition on random buffers", () => {
    fc.assert(
      fc.property(bytes(2000), fc.integer({ min: 0, max: 0xffff }), (b, initial) => {
        expect(checksum(b, initial)).toBe(referenceSum(b, initial));
      }),
    );
  });

  it("stays exact on buffers far larger than one fold block", () => {
    const big = new Uint8Array(300_000).fill(0xff);
    expect(checksum(big)).toBe(0xffff);
    const rnd = new Uint8Array(200_001);
    for (let i = 0; i < rnd.length; i++) rnd[i] = (i * 2654435761) >>> 24;
    expect(checksum(rnd)).toBe(referenceSum(rnd));
  });

  it("sums only the bytes in [offset, offset + length)", () => {
    fc.assert(
      fc.property(bytes(200), fc.nat(), fc.nat(), (b, x, y) => {
        const offset = x % (b.length + 1);
        const length = y % (b.length - offset + 1);
        expect(checksum(b, 0, offset, length)).toBe(
          referenceSum(b.subarray(offset, offset + length)),
        );
      }),
    );
  });

  it("chains through `initial` across an even split", () => {
    fc.assert(
      fc.property(evenBytes(), bytes(), (a, b) => {
        const whole = new Uint8Array(a.length + b.length);
        whole.set(a);
        whole.set(b, a.length);
        expect(checksum(b, checksum(a))).toBe(checksum(whole));
      }),
    );
  });

  it("throws a RangeError for a range outside the buffer", () => {
    const b = new Uint8Array(10);
    expect(() => checksum(b, 0, 8, 4)).toThrow(RangeError);
    expect(() => checksum(b, 0, -1, 2)).toThrow(RangeError);
    expect(() => checksum(b, 0, 0, -2)).toThrow(RangeError);
  });
});

describe("combine", () => {
  it("adds two sums in ones' complement", () => {
    expect(combine(0xffff, 0x0001)).toBe(0x0001);
    expect(combine(0xffff, 0xffff)).toBe(0xffff);
    expect(combine(0x8000, 0x8000)).toBe(0x0001);
    expect(combine(0, 0)).toBe(0);
  });

  it("combines the sums of two even-length parts into the sum of the whole", () => {
    fc.assert(
      fc.property(evenBytes(), bytes(), (a, b) => {
        const whole = new Uint8Array(a.length + b.length);
        whole.set(a);
        whole.set(b, a.length);
        expect(combine(checksum(a), checksum(b))).toBe(checksum(whole));
      }),
    );
  });
});

describe("pseudoHeaderChecksum", () => {
  it("sums the IPv4 pseudo-header: src, dst, zero, protocol, length (RFC 768)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 0xffff }),
        (src, dst, proto, length) => {
          const ph = new Uint8Array(12);
          ph.set(src, 0);
          ph.set(dst, 4);
          ph[9] = proto;
          ph[10] = length >>> 8;
          ph[11] = length & 0xff;
          expect(pseudoHeaderChecksum(proto, src, dst, length)).toBe(checksum(ph));
        },
      ),
    );
  });

  it("sums the IPv6 pseudo-header with its 32-bit upper-layer length (RFC 8200 §8.1)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (src, dst, next, length) => {
          const ph = new Uint8Array(40);
          ph.set(src, 0);
          ph.set(dst, 16);
          new DataView(ph.buffer).setUint32(32, length);
          ph[39] = next;
          expect(pseudoHeaderChecksum(next, src, dst, length)).toBe(checksum(ph));
        },
      ),
    );
  });

  it("is not complemented", () => {
    const zero = new Uint8Array(4);
    expect(pseudoHeaderChecksum(1, zero, zero, 0)).toBe(1);
  });
});

describe("incremental update (RFC 1624)", () => {
  it("reproduces the RFC 1624 §4 example with equation 3 (result 0x0000, not 0xffff)", () => {
    expect(checksumUpdate16(0xdd2f, 0x5555, 0x3285)).toBe(0x0000);
  });

  // Word 0 is the checksum field; word 1 is a fixed non-zero word, as every real header has
  // one (IP version, ICMP type): see the all-zero rule below.
  it("equals recomputation after changing any aligned word of a random message", () => {
    fc.assert(
      fc.property(
        evenBytes(200).filter((b) => b.length >= 6),
        fc.nat(),
        fc.integer({ min: 0, max: 0xffff }),
        (msg, at, value) => {
          msg.set([0, 0, 0x45, 0x00]);
          const field = ~checksum(msg) & 0xffff;
          const i = 4 + 2 * (at % ((msg.length - 4) / 2));
          const old = (msg[i] << 8) | msg[i + 1];
          msg[i] = value >>> 8;
          msg[i + 1] = value & 0xff;
          expect(checksumUpdate16(field, old, value)).toBe(~checksum(msg) & 0xffff);
        },
      ),
    );
  });

  it("updates for a replaced byte run (an address) as recomputation does", () => {
    fc.assert(
      fc.property(evenBytes(100), address(), address(), (prefix, oldAddr, newAddr0) => {
        const newAddr = newAddr0.length === oldAddr.length ? newAddr0 : oldAddr.map((x) => ~x);
        const msg = new Uint8Array(4 + prefix.length + oldAddr.length);
        msg.set([0, 0, 0x45, 0x00]);
        msg.set(prefix, 4);
        msg.set(oldAddr, 4 + prefix.length);
        const field = ~checksum(msg) & 0xffff;
        msg.set(newAddr, 4 + prefix.length);
        expect(checksumUpdateBytes(field, oldAddr, newAddr)).toBe(~checksum(msg) & 0xffff);
      }),
    );
  });

  it("differs from recomputation only when the covered bytes become all zero (-0 vs +0)", () => {
    // An all-zero message sums to +0 (field 0xffff); equation 3 can only reach -0 (field 0).
    const msg = hex("0000 0800");
    const field = ~checksum(msg) & 0xffff;
    expect(checksumUpdate16(field, 0x0800, 0x0000)).toBe(0x0000);
    expect(~checksum(hex("0000 0000")) & 0xffff).toBe(0xffff);
  });

  it("refuses runs of different lengths", () => {
    expect(() => checksumUpdateBytes(0, new Uint8Array(4), new Uint8Array(16))).toThrow(RangeError);
  });
});
