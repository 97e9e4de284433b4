import { newIPv4Protocol } from "./ipv4/protocol.js";
import { newIPv6Protocol } from "./ipv6/protocol.js";
import type { NetworkProtocolFactory } from "./protocol.js";

/**
 * IPv4 and IPv6: what a Stack gets when StackOptions.networkProtocols is absent, as
 * `stack.Options{NetworkProtocols: []NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol}}`
 * in gVisor. Pass a subset to build a single-family stack.
 */
export const DEFAULT_NETWORK_PROTOCOLS: readonly NetworkProtocolFactory[] = Object.freeze([
  newIPv4Protocol,
  newIPv6Protocol,
]);
