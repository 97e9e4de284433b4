/**
 * Observer: the handler records each request's id() and packetInfo() and returns false, so the
 * netstack answers exactly as if no handler were installed (the decision table's second row).
 *
 * Try it, as root, inside a private network namespace:
 *   npm run build                                     # icmpfwd/netstack resolves to dist/
 *   ip netns add demo
 *   ip netns exec demo npx tsx examples/observer.ts   # terminal 1; Ctrl-C to stop
 *   ip netns exec demo ping -c 3 198.18.0.2           # terminal 2 (or ping -6 fd00:1::2)
 *   ip netns delete demo                              # clean up
 */
import {
  Forwarder,
  type ForwarderRequest,
  formatAddress,
  ICMPV4_PROTOCOL_NUMBER,
  ICMPV6_PROTOCOL_NUMBER,
} from "icmpfwd/netstack";
import { startDemo } from "./demo-netstack.js";

function observe(req: ForwarderRequest): void {
  const id = req.id(); // localAddress = IP destination, localPort = ICMP ident
  const info = req.packetInfo();
  const type = req.packetBuffer().transportMessage()[0];
  console.log(
    `ICMP type ${type} ${formatAddress(id.remoteAddress)} -> ${formatAddress(id.localAddress)}` +
      ` ident=${id.localPort} temporary=${info.localAddressTemporary}` +
      ` broadcast=${info.localAddressBroadcast}`,
  );
}

const stack = startDemo();
const forwarder = new Forwarder((req) => {
  observe(req);
  return false; // not consumed: the built-in Echo Reply still goes out
});
stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, forwarder.handlePacket);
stack.setTransportProtocolHandler(ICMPV6_PROTOCOL_NUMBER, forwarder.handlePacket);
