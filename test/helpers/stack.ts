/** A stack on an in-memory link with the service's default addresses, for unit tests. */
import { ChannelEndpoint } from "../../src/link/channel.js";
import { Subnet } from "../../src/netstack/address.js";
import { ManualClock } from "../../src/netstack/clock.js";
import { Stack, type StackOptions } from "../../src/netstack/stack.js";
import { addr } from "./packets.js";

export const NIC_ID = 1;

export interface TestStack {
  stack: Stack;
  link: ChannelEndpoint;
  clock: ManualClock;
}

/**
 * NIC 1 owns 198.18.0.2/24, fd00:1::2/64 and fe80::2/64 with on-link routes, as `icmpfwd serve`
 * configures it; `routes: false` leaves the route table empty.
 */
export function testStack(
  options: StackOptions & { routes?: boolean; mtu?: number } = {},
): TestStack {
  const clock = new ManualClock(1000);
  const stack = new Stack({ clock, ...options });
  const link = new ChannelEndpoint(options.mtu ?? 1500);
  const check = (e: unknown): void => {
    if (e !== null) throw new Error(`test stack setup: ${JSON.stringify(e)}`);
  };
  check(stack.createNIC(NIC_ID, link, { name: "test0" }));
  check(stack.addAddress(NIC_ID, addr("198.18.0.2"), 24));
  check(stack.addAddress(NIC_ID, addr("fd00:1::2"), 64));
  check(stack.addAddress(NIC_ID, addr("fe80::2"), 64));
  if (options.routes !== false) {
    for (const s of ["198.18.0.0/24", "fd00:1::/64", "fe80::/64"]) {
      const subnet = Subnet.parse(s);
      if (subnet === null) throw new Error(s);
      check(stack.addRoute(subnet, NIC_ID));
    }
  }
  return { stack, link, clock };
}
