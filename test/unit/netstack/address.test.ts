import { isIP } from "node:net";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  addressEquals,
  addressKey,
  formatAddress,
  IPV4_ALL_SYSTEMS,
  IPV4_BROADCAST,
  IPV6_ALL_NODES_MULTICAST,
  IPV6_ALL_ROUTERS_MULTICAST,
  isIPv4,
  isV4Broadcast,
  isV4Loopback,
  isV4Multicast,
  isV4Unspecified,
  isV6LinkLocalMulticast,
  isV6LinkLocalUnicast,
  isV6Loopback,
  isV6Multicast,
  isV6Unspecified,
  parseAddress,
  parseAddressWithPrefix,
  Subnet,
  solicitedNodeMulticast,
} from "../../../src/netstack/address.js";

const a = (text: string): Uint8Array => {
  const r = parseAddress(text);
  if (r === null) throw new Error(`test address ${text} does not parse`);
  return r;
};

const addr4 = (): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: 4, maxLength: 4 });
/** IPv6 addresses rich in zero groups, so `::` placement is exercised. */
const addr6 = (): fc.Arbitrary<Uint8Array> =>
  fc
    .array(fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff })), {
      minLength: 8,
      maxLength: 8,
    })
    .map((words) => {
      const out = new Uint8Array(16);
      words.forEach((w, i) => {
        out[2 * i] = w >>> 8;
        out[2 * i + 1] = w & 0xff;
      });
      return out;
    });

describe("parseAddress", () => {
  it("parses a dotted quad into 4 bytes", () => {
    expect(a("198.18.0.1")).toEqual(Uint8Array.of(198, 18, 0, 1));
    expect(a("0.0.0.0")).toEqual(new Uint8Array(4));
    expect(a("255.255.255.255")).toEqual(IPV4_BROADCAST);
  });

  it("refuses malformed dotted quads, including leading zeros (octal ambiguity)", () => {
    for (const t of [
      "1.2.3",
      "1.2.3.4.5",
      "256.1.1.1",
      "01.2.3.4",
      "1.2.3.4 ",
      "1..2.3",
      "",
      "a.b.c.d",
      "1.2.3.-4",
      "1.2.3.4/24",
    ]) {
      expect(parseAddress(t), t).toBeNull();
    }
  });

  it("parses every RFC 4291 §2.2 form of IPv6 text into 16 bytes", () => {
    const doc = Uint8Array.of(
      0x20,
      0x01,
      0x0d,
      0xb8,
      0,
      0,
      0,
      0,
      0,
      8,
      0x08,
      0,
      0x20,
      0x0c,
      0x41,
      0x7a,
    );
    expect(a("2001:DB8:0:0:8:800:200C:417A")).toEqual(doc);
    expect(a("2001:0db8:0000:0000:0008:0800:200c:417a")).toEqual(doc);
    expect(a("2001:db8::8:800:200c:417a")).toEqual(doc);
    expect(a("::")).toEqual(new Uint8Array(16));
    expect(a("::1")[15]).toBe(1);
    expect(a("ff02::1")).toEqual(IPV6_ALL_NODES_MULTICAST);
    expect(a("1::")).toEqual(Uint8Array.of(0, 1, ...new Array<number>(14).fill(0)));
    expect(a("1:2:3:4:5:6:7::")[13]).toBe(7);
    expect(a("::2:3:4:5:6:7:8")[15]).toBe(8);
  });

  it("parses IPv4 embedded in IPv6 text", () => {
    expect(a("::ffff:198.18.0.1")).toEqual(
      Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1),
    );
    expect(a("0:0:0:0:0:ffff:198.18.0.1")).toEqual(a("::ffff:c612:1"));
    expect(a("64:ff9b::192.0.2.33")).toEqual(a("64:ff9b::c000:221"));
  });

  it("refuses zones, brackets, prefixes and malformed IPv6 text", () => {
    for (const t of [
      "fe80::1%eth0",
      "[::1]",
      "::1/128",
      ":::",
      "1:::2",
      "1::2::3",
      ":1::",
      "1::2:",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8::",
      "12345::",
      "g::",
      "::1.2.3.4:5",
      "1.2.3.4::",
      "::ffff:1.2.3",
      "::ffff:01.2.3.4",
      " ::1",
    ]) {
      expect(parseAddress(t), t).toBeNull();
    }
  });

  it("accepts exactly the addresses Node's own parser accepts (no zones)", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.ipV4(),
          fc.ipV6(),
          fc.ipV4Extended(),
          fc.string({ unit: fc.constantFrom(..."0123456789abcdef:.") }),
        ),
        (t) => {
          expect(parseAddress(t) !== null, t).toBe(isIP(t) !== 0);
        },
      ),
    );
  });
});

describe("formatAddress (RFC 5952)", () => {
  it.each([
    ["2001:db8::1", "2001:0DB8:0000:0000:0000:0000:0000:0001"],
    ["2001:db8::1:0:0:1", "2001:db8:0:0:1:0:0:1"],
    ["::", "0:0:0:0:0:0:0:0"],
    ["::1", "0:0:0:0:0:0:0:1"],
    ["fe80::2", "fe80:0:0:0:0:0:0:2"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8::1:1:1:1:1"],
    ["2001:0:0:1::1", "2001:0:0:1:0:0:0:1"],
    ["1::", "1:0:0:0:0:0:0:0"],
    ["ff02::1:ff00:2", "ff02:0:0:0:0:1:ff00:2"],
  ])("writes %s", (canonical, input) => {
    expect(formatAddress(a(input))).toBe(canonical);
  });

  it("writes IPv4-mapped addresses in mixed notation (RFC 5952 §5)", () => {
    expect(formatAddress(a("::ffff:198.18.0.1"))).toBe("::ffff:198.18.0.1");
    expect(formatAddress(a("0:0:0:0:0:ffff:c612:1"))).toBe("::ffff:198.18.0.1");
  });

  it("writes IPv4 as a dotted quad", () => {
    expect(formatAddress(Uint8Array.of(198, 18, 0, 2))).toBe("198.18.0.2");
  });

  it("round-trips parse(format(a)) for any address", () => {
    fc.assert(
      fc.property(fc.oneof(addr4(), addr6()), (addr) => {
        expect(parseAddress(formatAddress(addr))).toEqual(addr);
      }),
    );
  });

  it("round-trips format(parse(t)) for canonical text", () => {
    fc.assert(
      fc.property(fc.oneof(addr4(), addr6()), (addr) => {
        const t = formatAddress(addr);
        expect(formatAddress(a(t))).toBe(t);
      }),
    );
  });

  it("compresses the longest run of two or more zero groups, the first on a tie", () => {
    fc.assert(
      fc.property(addr6(), (addr) => {
        const t = formatAddress(addr);
        if (t.includes(".")) return;
        const words = Array.from({ length: 8 }, (_, i) => (addr[2 * i] << 8) | addr[2 * i + 1]);
        // Every maximal run of zero groups, as [start, length].
        const runs: [number, number][] = [];
        for (let i = 0; i < 8; i++) {
          if (words[i] !== 0 || (i > 0 && words[i - 1] === 0)) continue;
          let j = i;
          while (j < 8 && words[j] === 0) j++;
          runs.push([i, j - i]);
        }
        const longest = Math.max(0, ...runs.map(([, n]) => n));
        if (longest < 2) {
          expect(t).not.toContain("::");
          return;
        }
        const [head, tail] = t.split("::");
        const start = head === "" ? 0 : head.split(":").length;
        const shown = start + (tail === "" ? 0 : tail.split(":").length);
        expect([start, 8 - shown]).toEqual(runs.find(([, n]) => n === longest));
        expect(t.split("::").length).toBe(2);
        expect(t).toMatch(/^[0-9a-f:]+$/);
        expect(t).not.toMatch(/(^|:)0[0-9a-f]/); // no leading zeros
      }),
    );
  });

  it("agrees with Node's WHATWG URL serializer for IPv6 not mapped from IPv4", () => {
    fc.assert(
      fc.property(addr6(), (addr) => {
        const t = formatAddress(addr);
        if (t.includes(".")) return;
        expect(new URL(`http://[${t}]/`).hostname).toBe(`[${t}]`);
      }),
    );
  });
});

describe("address comparison and keys", () => {
  it("compares addresses by family and bytes", () => {
    expect(addressEquals(a("198.18.0.1"), a("198.18.0.1"))).toBe(true);
    expect(addressEquals(a("198.18.0.1"), a("198.18.0.2"))).toBe(false);
    expect(addressEquals(a("198.18.0.1"), a("::ffff:198.18.0.1"))).toBe(false);
  });

  it("gives equal addresses equal keys and different addresses different keys", () => {
    fc.assert(
      fc.property(fc.oneof(addr4(), addr6()), fc.oneof(addr4(), addr6()), (x, y) => {
        expect(addressKey(x) === addressKey(y)).toBe(addressEquals(x, y));
        expect(addressKey(x)).toBe(addressKey(x.slice()));
      }),
    );
  });

  it("tells IPv4 from IPv6 by length", () => {
    expect(isIPv4(a("198.18.0.1"))).toBe(true);
    expect(isIPv4(a("::ffff:198.18.0.1"))).toBe(false);
  });
});

describe("address classes", () => {
  it.each([
    ["0.0.0.0", isV4Unspecified, true],
    ["0.0.0.1", isV4Unspecified, false],
    ["255.255.255.255", isV4Broadcast, true],
    ["198.18.0.255", isV4Broadcast, false],
    ["224.0.0.1", isV4Multicast, true],
    ["239.255.255.255", isV4Multicast, true],
    ["240.0.0.1", isV4Multicast, false],
    ["223.255.255.255", isV4Multicast, false],
    ["127.0.0.1", isV4Loopback, true],
    ["127.255.0.9", isV4Loopback, true],
    ["128.0.0.1", isV4Loopback, false],
    ["::", isV6Unspecified, true],
    ["::1", isV6Unspecified, false],
    ["::1", isV6Loopback, true],
    ["::2", isV6Loopback, false],
    ["ff00::", isV6Multicast, true],
    ["ff02::1", isV6Multicast, true],
    ["fe80::1", isV6Multicast, false],
    ["fe80::2", isV6LinkLocalUnicast, true],
    ["febf:ffff::1", isV6LinkLocalUnicast, true],
    ["fec0::1", isV6LinkLocalUnicast, false],
    ["fd00:9::1", isV6LinkLocalUnicast, false],
    ["ff02::1", isV6LinkLocalMulticast, true],
    ["ff02::1:ff00:2", isV6LinkLocalMulticast, true],
    ["ff05::2", isV6LinkLocalMulticast, false],
  ] as const)("classifies %s with %o as %s", (text, predicate, expected) => {
    expect(predicate(a(text))).toBe(expected);
  });

  it("never classifies an address of the other family", () => {
    expect(isV4Unspecified(a("::"))).toBe(false);
    expect(isV6Unspecified(a("0.0.0.0"))).toBe(false);
    expect(isV4Loopback(a("::ffff:127.0.0.1"))).toBe(false);
    expect(isV6Multicast(a("255.0.0.0"))).toBe(false);
  });

  it("has the well-known group and broadcast constants", () => {
    expect(formatAddress(IPV4_ALL_SYSTEMS)).toBe("224.0.0.1");
    expect(formatAddress(IPV4_BROADCAST)).toBe("255.255.255.255");
    expect(formatAddress(IPV6_ALL_NODES_MULTICAST)).toBe("ff02::1");
    expect(formatAddress(IPV6_ALL_ROUTERS_MULTICAST)).toBe("ff02::2");
  });

  it("maps an address to its solicited-node group ff02::1:ffXX:XXXX", () => {
    expect(formatAddress(solicitedNodeMulticast(a("fd00:1::2")))).toBe("ff02::1:ff00:2");
    expect(formatAddress(solicitedNodeMulticast(a("2001:db8::abcd:1234:5678")))).toBe(
      "ff02::1:ff34:5678",
    );
    expect(() => solicitedNodeMulticast(a("198.18.0.2"))).toThrow(RangeError);
  });
});

describe("Subnet", () => {
  it("clears the host bits of its address", () => {
    const s = new Subnet(a("198.18.0.77"), 24);
    expect(formatAddress(s.address)).toBe("198.18.0.0");
    expect(s.toString()).toBe("198.18.0.0/24");
    expect(new Subnet(a("fd00:9::2"), 64).toString()).toBe("fd00:9::/64");
    expect(new Subnet(a("198.18.255.1"), 17).toString()).toBe("198.18.128.0/17");
  });

  it("throws RangeError on a bad prefix length", () => {
    expect(() => new Subnet(a("198.18.0.0"), 33)).toThrow(RangeError);
    expect(() => new Subnet(a("::"), 129)).toThrow(RangeError);
    expect(() => new Subnet(a("::"), -1)).toThrow(RangeError);
    expect(() => new Subnet(a("::"), 1.5)).toThrow(RangeError);
    expect(() => new Subnet(new Uint8Array(5), 1)).toThrow(RangeError);
  });

  it("parses address/prefix text, and refuses anything else", () => {
    expect(Subnet.parse("198.18.0.0/24")?.toString()).toBe("198.18.0.0/24");
    expect(Subnet.parse("198.18.0.2/24")?.toString()).toBe("198.18.0.0/24");
    expect(Subnet.parse("fd00:1::/64")?.prefixLength).toBe(64);
    expect(Subnet.parse("0.0.0.0/0")?.contains(a("203.0.113.1"))).toBe(true);
    for (const t of [
      "198.18.0.0",
      "198.18.0.0/33",
      "198.18.0.0/",
      "198.18.0.0/024",
      "x/8",
      "::/129",
      "::/1/2",
      "198.18.0.0/ 24",
    ]) {
      expect(Subnet.parse(t), t).toBeNull();
    }
  });

  it("contains exactly the addresses that share its prefix", () => {
    const s = Subnet.parse("198.18.128.0/17")!;
    expect(s.contains(a("198.18.128.0"))).toBe(true);
    expect(s.contains(a("198.18.255.255"))).toBe(true);
    expect(s.contains(a("198.18.127.255"))).toBe(false);
    expect(s.contains(a("198.19.128.1"))).toBe(false);
    expect(s.contains(a("::ffff:198.18.128.1"))).toBe(false);
    const v6 = Subnet.parse("fd00:1::/64")!;
    expect(v6.contains(a("fd00:1::2"))).toBe(true);
    expect(v6.contains(a("fd00:1:0:1::2"))).toBe(false);
  });

  it("contains an address iff masking the address yields the subnet", () => {
    fc.assert(
      fc.property(
        fc.oneof(addr4(), addr6()),
        fc.oneof(addr4(), addr6()),
        fc.nat(128),
        (x, y, p) => {
          if (x.length !== y.length) return;
          const prefix = p % (x.length * 8 + 1);
          const s = new Subnet(x, prefix);
          expect(s.contains(x)).toBe(true);
          expect(s.contains(y)).toBe(new Subnet(y, prefix).equals(s));
        },
      ),
    );
  });

  it("has the all-host-bits-set broadcast address", () => {
    expect(formatAddress(Subnet.parse("198.18.0.0/24")!.broadcast())).toBe("198.18.0.255");
    expect(formatAddress(Subnet.parse("198.18.128.0/17")!.broadcast())).toBe("198.18.255.255");
    expect(formatAddress(Subnet.parse("198.18.0.2/32")!.broadcast())).toBe("198.18.0.2");
    expect(formatAddress(Subnet.parse("0.0.0.0/0")!.broadcast())).toBe("255.255.255.255");
    expect(formatAddress(Subnet.parse("198.18.0.0/24")!.mask())).toBe("255.255.255.0");
  });
});

describe("parseAddressWithPrefix", () => {
  it("keeps the host bits of an interface address", () => {
    const p = parseAddressWithPrefix("198.18.0.2/24");
    expect(p).not.toBeNull();
    expect(formatAddress(p!.address)).toBe("198.18.0.2");
    expect(p!.prefixLength).toBe(24);
    expect(parseAddressWithPrefix("fe80::2/64")?.prefixLength).toBe(64);
  });

  it("refuses text without a valid prefix", () => {
    for (const t of [
      "198.18.0.2",
      "198.18.0.2/33",
      "fd00::1/200",
      "fd00::1/",
      "/24",
      "198.18.0.2/+4",
    ]) {
      expect(parseAddressWithPrefix(t), t).toBeNull();
    }
  });
});
