/**
 * The one shape both stacks get, in every mode: NIC 1's addresses in order (the first of a
 * family is its primary address, what gVisor's snapshot answers broadcast and multicast Echo
 * Requests from) and on-link routes, longest first (gVisor's route table is first match). Two
 * addresses per family reach source selection; the default IPv6 route gives every IPv6 source a
 * route back, so an IPv4-mapped source reaches ipv6.go checkV4Mapped instead of a missing route.
 */

import { parseAddress, Subnet } from "../../src/netstack/address.js";
import { ManualClock } from "../../src/netstack/clock.js";
import type { LinkEndpoint } from "../../src/netstack/link-endpoint.js";
import { Stack } from "../../src/netstack/stack.js";

export const NIC = 1;

export const ADDRESSES: readonly string[] = [
  "198.18.0.2/24",
  "198.19.0.2/24",
  "fd00:1::2/64",
  "fe80::2/64",
  "fd00:3::2/64",
];

export const ROUTES: readonly string[] = [
  "198.18.0.0/24",
  "198.19.0.0/16",
  "fd00:1::/64",
  "fd00:3::/64",
  "fe80::/64",
  "::/0",
];

/** The gVisor peer's flags for this shape. */
export function peerShapeArgs(): string[] {
  return [...ADDRESSES.flatMap((a) => ["-addr", a]), ...ROUTES.flatMap((r) => ["-route", r])];
}

/**
 * A fresh icmpfwd Stack of this shape on `link`: a manual clock (no timer fires, as the peer's
 * faketime clock) and no sweep timer, so nothing outlives the input.
 */
export function shapedStack(link: LinkEndpoint): Stack {
  const stack = new Stack({ clock: new ManualClock(1000), fragmentSweepIntervalMs: 0 });
  const check = (e: unknown, what: string): void => {
    if (e !== null) throw new Error(`differential stack: ${what}: ${JSON.stringify(e)}`);
  };
  check(stack.createNIC(NIC, link, { name: "diff0" }), "createNIC");
  for (const a of ADDRESSES) {
    const [text, length] = a.split("/");
    const address = parseAddress(text);
    if (address === null) throw new Error(a);
    check(stack.addAddress(NIC, address, Number(length)), a);
  }
  for (const r of ROUTES) {
    const subnet = Subnet.parse(r);
    if (subnet === null) throw new Error(r);
    check(stack.addRoute(subnet, NIC), r);
  }
  return stack;
}
