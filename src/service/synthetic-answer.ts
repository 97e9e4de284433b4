/**
 * A SyntheticReply off the wire as the dispatcher takes it: an Echo Reply (with its payload) or
 * an ICMP error of a known type from a parsed address — or why the message is malformed, for an
 * INVALID_ARGUMENT Rejection. Checks that need the request (payload limit, the source's family
 * and ownership) are the dispatcher's (synthetic-replies.ts).
 */
import { SyntheticErrorType, type SyntheticReply } from "../gen/icmpfwd/v1/forwarder.js";
import { parseAddress } from "../netstack/address.js";
import type { SyntheticErrorKind } from "../netstack/icmp/synthetic-error.js";
import type { SyntheticAnswer } from "./synthetic-replies.js";

/** The longest SyntheticError.source accepted (the longest IPv6 text is 45 characters). */
export const MAX_SOURCE_TEXT = 64;

const KINDS: ReadonlyMap<SyntheticErrorType, SyntheticErrorKind> = new Map([
  [SyntheticErrorType.SYNTHETIC_ERROR_TYPE_TIME_EXCEEDED, "timeExceeded"],
  [SyntheticErrorType.SYNTHETIC_ERROR_TYPE_NET_UNREACHABLE, "netUnreachable"],
  [SyntheticErrorType.SYNTHETIC_ERROR_TYPE_HOST_UNREACHABLE, "hostUnreachable"],
  [SyntheticErrorType.SYNTHETIC_ERROR_TYPE_PROTOCOL_UNREACHABLE, "protocolUnreachable"],
  [SyntheticErrorType.SYNTHETIC_ERROR_TYPE_PORT_UNREACHABLE, "portUnreachable"],
  [SyntheticErrorType.SYNTHETIC_ERROR_TYPE_ADMIN_PROHIBITED, "adminProhibited"],
]);

export function syntheticAnswerOf(m: SyntheticReply): SyntheticAnswer | string {
  const id = m.requestId;
  const e = m.error;
  if (e === undefined) return { kind: "echoReply", payload: m.payload };
  if (m.payload !== undefined)
    return `request ${id}: payload and error are exclusive (an ICMP error quotes the request); nothing sent`;
  const kind = KINDS.get(e.type);
  if (kind === undefined)
    return `request ${id}: error.type: ${e.type === SyntheticErrorType.SYNTHETIC_ERROR_TYPE_UNSPECIFIED ? "required" : `unknown value ${e.type}`}; nothing sent`;
  if (e.source.length > MAX_SOURCE_TEXT)
    return `request ${id}: error.source: at most ${MAX_SOURCE_TEXT} characters, got ${e.source.length}; nothing sent`;
  const source = parseAddress(e.source);
  if (source === null)
    return `request ${id}: error.source: ${JSON.stringify(e.source)} is not an IP address; nothing sent`;
  return { kind: "error", error: kind, source, sourceText: e.source };
}
