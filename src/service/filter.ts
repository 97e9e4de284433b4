/** A session's Filter, validated once at Hello and matched per request. */
import { Family, type Filter } from "../gen/icmpfwd/v1/forwarder.js";
import { type Address, Subnet } from "../netstack/address.js";
import type { EchoRequestFields } from "../netstack/icmp/echo-fields.js";
import { type ServiceError, serviceError } from "./errors.js";

/** The most prefixes one filter list may hold (matching is linear). */
export const MAX_FILTER_PREFIXES = 256;

/**
 * The longest text of one prefix ("ffff:…:ffff/128" is 43 characters, an IPv4-mapped one 49):
 * a longer one is no prefix, and is refused without being parsed or quoted.
 */
export const MAX_PREFIX_TEXT = 64;

export class SessionFilter {
  /** Matches everything. */
  static readonly ALL = new SessionFilter(null, [], [], false);

  private constructor(
    readonly family: "ipv4" | "ipv6" | null,
    readonly sources: readonly Subnet[],
    readonly destinations: readonly Subnet[],
    readonly temporaryOnly: boolean,
  ) {}

  /** Validates a Hello's filter; an error names the bad field. */
  static compile(f: Filter | undefined): SessionFilter | ServiceError {
    if (f === undefined) return SessionFilter.ALL;
    let family: "ipv4" | "ipv6" | null;
    switch (f.family) {
      case Family.FAMILY_UNSPECIFIED:
        family = null;
        break;
      case Family.FAMILY_IPV4:
        family = "ipv4";
        break;
      case Family.FAMILY_IPV6:
        family = "ipv6";
        break;
      default:
        return serviceError("invalidHello", `filter.family: unknown value ${f.family}`);
    }
    const sources = parsePrefixes("filter.source_prefixes", f.sourcePrefixes);
    if (!Array.isArray(sources)) return sources;
    const destinations = parsePrefixes("filter.destination_prefixes", f.destinationPrefixes);
    if (!Array.isArray(destinations)) return destinations;
    if (family === null && sources.length === 0 && destinations.length === 0 && !f.temporaryOnly)
      return SessionFilter.ALL;
    return new SessionFilter(family, sources, destinations, f.temporaryOnly);
  }

  matches(r: EchoRequestFields, temporary: boolean): boolean {
    if (this === SessionFilter.ALL) return true;
    if (this.family !== null && this.family !== r.family) return false;
    if (this.temporaryOnly && !temporary) return false;
    if (this.sources.length > 0 && !anyContains(this.sources, r.source)) return false;
    if (this.destinations.length > 0 && !anyContains(this.destinations, r.destination))
      return false;
    return true;
  }
}

function anyContains(subnets: readonly Subnet[], a: Address): boolean {
  for (const s of subnets) if (s.contains(a)) return true;
  return false;
}

function parsePrefixes(field: string, texts: readonly string[]): Subnet[] | ServiceError {
  if (texts.length > MAX_FILTER_PREFIXES)
    return serviceError(
      "invalidHello",
      `${field}: at most ${MAX_FILTER_PREFIXES} prefixes, got ${texts.length}`,
    );
  const out: Subnet[] = [];
  for (const [i, t] of texts.entries()) {
    if (t.length > MAX_PREFIX_TEXT)
      return serviceError(
        "invalidHello",
        `${field}[${i}]: at most ${MAX_PREFIX_TEXT} characters, got ${t.length}`,
      );
    const s = Subnet.parse(t);
    if (s === null)
      return serviceError("invalidHello", `${field}[${i}]: "${t}" is not an ADDRESS/PREFIX`);
    out.push(s);
  }
  return out;
}
