/** The ICMP transport layer an embedder uses: the Forwarder, ping endpoints, synthetic replies. */
export {
  DEFAULT_MAX_HELD,
  Forwarder,
  type ForwarderHandler,
  type ForwarderOptions,
  ForwarderRequest,
  type ForwarderStats,
  RequestExpired,
} from "./forwarder.js";
export type { EchoReplyEvent, PingEndpoint, PingEndpointOptions } from "./ping.js";
export {
  copyEchoRequest,
  type EchoRequestCopy,
  type SyntheticReplyOptions,
  sendSyntheticEchoReply,
} from "./synthetic.js";
