/** The relay's --allow: the only destination prefixes it sends to (it is never an open relay). */
import ipaddr from "ipaddr.js";

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

export class AllowList {
  private constructor(private readonly ranges: Range[]) {}

  /** Comma-separated prefixes; throws `not a prefix: "…"` for the first bad one. */
  static parse(list: string): AllowList {
    const ranges: Range[] = [];
    for (const part of list.split(",")) {
      const text = part.trim();
      if (!ipaddr.isValidCIDR(text)) throw new Error(`not a prefix: ${JSON.stringify(part)}`);
      const [address, bits] = ipaddr.parseCIDR(text);
      ranges.push([unmap(address), isMapped(address) ? bits - 96 : bits]);
    }
    return new AllowList(ranges);
  }

  /** Both lists' prefixes. */
  concat(other: AllowList): AllowList {
    return new AllowList([...this.ranges, ...other.ranges]);
  }

  get empty(): boolean {
    return this.ranges.length === 0;
  }

  /** Whether `address` is inside one of the prefixes (an IPv4-mapped one as its IPv4). */
  contains(address: string): boolean {
    if (!ipaddr.isValid(address)) return false;
    const a = unmap(ipaddr.parse(address));
    return this.ranges.some(([net, bits]) => net.kind() === a.kind() && a.match(net, bits));
  }

  toString(): string {
    return this.ranges.map(([net, bits]) => `${net.toString()}/${bits}`).join(",");
  }
}

const isMapped = (a: ipaddr.IPv4 | ipaddr.IPv6): boolean =>
  a instanceof ipaddr.IPv6 && a.isIPv4MappedAddress();

const unmap = (a: ipaddr.IPv4 | ipaddr.IPv6): ipaddr.IPv4 | ipaddr.IPv6 =>
  a instanceof ipaddr.IPv6 && a.isIPv4MappedAddress() ? a.toIPv4Address() : a;
