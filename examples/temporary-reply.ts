/**
 * Large-address-space delegation (the seed's temporary-address embedder): a promiscuous NIC
 * accepts Echo Requests for any address the kernel routes into the TUN. For IPv4 the netstack
 * does not answer temporary addresses by itself; this handler asks it to with reply(), and the
 * reply comes from the address that was pinged. Everything else keeps the default behaviour.
 *
 * Try it, as root, inside a private network namespace:
 *   npm run build
 *   ip netns add demo
 *   ip netns exec demo npx tsx examples/temporary-reply.ts   # terminal 1; Ctrl-C to stop
 *   ip netns exec demo ping -c 3 198.18.200.7                # terminal 2: "from 198.18.200.7"
 *   ip netns exec demo ping -c 3 fd00:2::7                   # IPv6 is answered by default too
 *   ip netns delete demo                                     # clean up
 */
import { Forwarder, ICMPV4_PROTOCOL_NUMBER, ICMPV6_PROTOCOL_NUMBER } from "icmpfwd/netstack";
import { startDemo } from "./demo-netstack.js";

const stack = startDemo({
  promiscuous: true,
  // The kernel sends pings for these prefixes into the TUN; none of them is on the NIC.
  routes: ["198.18.128.0/17", "fd00:2::/64"],
});

const forwarder = new Forwarder((req) =>
  // reply() runs the built-in Echo Reply once and returns true; false = not consumed.
  req.packetInfo().localAddressTemporary ? req.reply() : false,
);
stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, forwarder.handlePacket);
stack.setTransportProtocolHandler(ICMPV6_PROTOCOL_NUMBER, forwarder.handlePacket);
