/**
 * A proxy owns the request (the seed's proxy smoke test): the handler copies what it needs,
 * returns true (consumed: no built-in reply), and later sends a synthetic Echo Reply, as a proxy
 * would once its upstream answered. ping shows the delay as the round-trip time.
 *
 * Try it, as root, inside a private network namespace:
 *   npm run build
 *   ip netns add demo
 *   ip netns exec demo npx tsx examples/proxy-owns-request.ts 4242   # delay in ms (default 300)
 *   ip netns exec demo ping -c 3 -i 5 198.18.0.2     # terminal 2: time=4245 ms or so
 *   ip netns delete demo                             # clean up
 */
import {
  copyEchoRequest,
  Forwarder,
  formatAddress,
  ICMPV4_PROTOCOL_NUMBER,
  ICMPV6_PROTOCOL_NUMBER,
  isTcpipError,
  sendSyntheticEchoReply,
} from "icmpfwd/netstack";
import { startDemo } from "./demo-netstack.js";

const delayMs = Number(process.argv[2] ?? 300);
const stack = startDemo();

const forwarder = new Forwarder((req) => {
  // The request is valid only while the handler runs: copy now, answer later.
  const copy = copyEchoRequest(req);
  if (isTcpipError(copy)) return false; // not an Echo Request: leave it to the netstack
  console.log(`proxy captured ${formatAddress(copy.source)} -> ${formatAddress(copy.destination)}`);
  setTimeout(() => {
    const err = sendSyntheticEchoReply(stack, copy); // route lookup from the original destination
    console.log(
      err === null ? `proxy replied after ${delayMs} ms` : `reply failed: ${err.message}`,
    );
  }, delayMs);
  return true; // consumed: the netstack sends no built-in reply
});
stack.setTransportProtocolHandler(ICMPV4_PROTOCOL_NUMBER, forwarder.handlePacket);
stack.setTransportProtocolHandler(ICMPV6_PROTOCOL_NUMBER, forwarder.handlePacket);
