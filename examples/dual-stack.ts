/**
 * Dual stack: one Forwarder, one handler, installed for ICMPv4 and ICMPv6 alike. The handler
 * sees both families through the same ForwarderRequest; here it answers every Echo Request with
 * the built-in reply (reply()), except pings larger than 1000 bytes, which it drops (returns
 * true without reply()). On Ctrl-C the forwarder's counters are printed.
 *
 * Try it, as root, inside a private network namespace:
 *   npm run build
 *   ip netns add demo
 *   ip netns exec demo npx tsx examples/dual-stack.ts        # terminal 1; Ctrl-C to stop
 *   ip netns exec demo ping -c 2 198.18.0.2                  # answered
 *   ip netns exec demo ping -c 2 fd00:1::2                   # answered
 *   ip netns exec demo ping -c 2 -s 1200 198.18.0.2          # dropped by the policy
 *   ip netns delete demo                                     # clean up
 */
import { Forwarder, ICMPV4_PROTOCOL_NUMBER, ICMPV6_PROTOCOL_NUMBER } from "icmpfwd/netstack";
import { startDemo } from "./demo-netstack.js";

const MAX_ECHO_BYTES = 1000;
const stack = startDemo();

const forwarder = new Forwarder((req) => {
  const family = req.id().localAddress.length === 4 ? "IPv4" : "IPv6";
  const size = req.packetBuffer().transportMessage().length;
  if (size > MAX_ECHO_BYTES) {
    console.log(`${family}: dropping a ${size}-byte ICMP message`);
    return true; // consumed, no reply
  }
  // reply() is false for anything that is not an Echo Request; then the netstack's
  // default handling continues, as for a handler returning false.
  return req.reply();
});

stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, forwarder.handlePacket);
stack.setTransportProtocolHandler(ICMPV6_PROTOCOL_NUMBER, forwarder.handlePacket);
process.once("exit", () => console.log(forwarder.stats));
