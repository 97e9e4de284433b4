export * from "./checksum.js";
export * from "./icmpv4.js";
export * from "./icmpv6.js";
export * from "./ipv4.js";
export * from "./ipv4-options.js";
export * from "./ipv6.js";
export * from "./ipv6-extension-headers.js";
