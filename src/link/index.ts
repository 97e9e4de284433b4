/** icmpfwd/link — link endpoints for the netstack: the TUN device, in-memory, pcapng sniffer. */
export { ChannelEndpoint } from "./channel.js";
export { PcapngWriter } from "./pcapng.js";
export { SnifferEndpoint } from "./sniffer.js";
export { TunEndpoint, TunError, type TunErrorKind, type TunOptions } from "./tun.js";
