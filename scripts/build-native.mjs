#!/usr/bin/env node
// Builds the TUN addon (native/ → native/build/Release/icmpfwd_tun.node) with node-gyp, offline,
// against the headers of the Node that runs this script (the build step itself is the client
// package's, clients/ts/scripts/build-addon.mjs, which builds its ICMP addon the same way). It is
// the package's "install" script: npm runs it for `npm ci` / `npm install` / `npm rebuild
// icmpfwd`. Unlike the client's, a failure here fails the install: the service needs its TUN.
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildAddon } from "../clients/ts/scripts/build-addon.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const failed =
  process.platform === "linux"
    ? buildAddon(join(root, "native"))
    : `TUN devices are Linux-only (this is ${process.platform})`;
if (failed !== null) {
  process.stderr.write(`icmpfwd: cannot build the TUN addon: ${failed}\n`);
  process.exit(1);
}
