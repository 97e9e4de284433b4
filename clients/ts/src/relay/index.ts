/** `@icmpfwd/client/relay`: the relay policy and its parts, for a policy of one's own. */
export { AllowList } from "./allow-list.js";
export { type IcmpAddon, IcmpAddonMissing, type IcmpSocket, loadIcmpAddon } from "./icmp-socket.js";
export { type ProbeMessage, parseMessage, parseQueuedError } from "./packets.js";
export {
  fullPayload,
  RELAY_PAYLOAD_BYTES,
  type RelayCounts,
  type RelayPolicy,
  type RelayPolicyOptions,
  relayPolicy,
  relaySummary,
} from "./policy.js";
export { type Answer, type Probe, Relay, type RelayOptions } from "./relay.js";
