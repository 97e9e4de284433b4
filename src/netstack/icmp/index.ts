export * from "./forwarder.js";
export * from "./ping.js";
export * from "./synthetic.js";
