/** The ICMP transport layer an embedder uses: the Forwarder, ping endpoints, synthetic replies and errors. */
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
export {
  SYNTHETIC_ERROR_KINDS,
  type SyntheticErrorKind,
  type SyntheticErrorOptions,
  sendSyntheticError,
  syntheticErrorSourceProblem,
} from "./synthetic-error.js";
