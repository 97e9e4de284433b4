#!/usr/bin/env node
// Builds a Node-API addon with node-gyp, offline, against the headers of the Node that runs this
// script: the one build step of both packages' native code (this package's ICMP socket, the
// service's TUN device; the service's scripts/build-native.mjs imports buildAddon). node-gyp's
// own output (some 50 lines of `gyp info`) is captured and printed only when the build fails, so
// a good install stays quiet; ICMPFWD_BUILD_VERBOSE=1 prints it always.
//
// Run as a script, it is this package's "install": it builds native/ → icmpfwd_icmp.node, and a
// failure (no toolchain) is one warning line and exit 0 — only the relay policy needs the addon,
// and it says so when it starts.
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const TOOLCHAIN_HINT =
  "install the toolchain with: apt-get install -y build-essential python3";

function onPath(command) {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir !== "" && existsSync(join(dir, command))) return join(dir, command);
  }
  return null;
}

// npm puts its bundled node-gyp on PATH for lifecycle scripts; run by hand, find the copy that
// ships inside npm itself (npm_execpath is <npm>/bin/npm-cli.js).
function nodeGypCommand() {
  const bin = onPath("node-gyp");
  if (bin !== null) return [bin];
  const candidates = [];
  if (process.env.npm_execpath) {
    candidates.push(
      join(dirname(dirname(process.env.npm_execpath)), "node_modules/node-gyp/bin/node-gyp.js"),
    );
  }
  // Next to this node binary: <prefix>/lib/node_modules/npm (the usual global install).
  const prefix = dirname(dirname(process.execPath));
  candidates.push(join(prefix, "lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"));
  for (const script of candidates) {
    if (existsSync(script)) return [process.execPath, script];
  }
  return null;
}

/**
 * `node-gyp rebuild` in `directory` (a binding.gyp's folder). Returns null when it built, else
 * why not in one line (node-gyp's output, when it ran, is on stderr already).
 */
export function buildAddon(directory) {
  if (process.platform !== "linux") return `Linux-only (this is ${process.platform})`;
  const missing = ["make", "g++", "python3"].filter((tool) => onPath(tool) === null);
  if (missing.length > 0) return `${missing.join(", ")} not found; ${TOOLCHAIN_HINT}`;
  const gyp = nodeGypCommand();
  if (gyp === null)
    return `node-gyp not found (it ships with npm; run this through npm); ${TOOLCHAIN_HINT}`;

  const args = ["rebuild", "--directory", directory];
  // Build against the installed headers; node-gyp would otherwise try to download them.
  const prefix = dirname(dirname(process.execPath));
  if (existsSync(join(prefix, "include/node/node.h"))) args.push(`--nodedir=${prefix}`);

  const [command, ...head] = gyp;
  const verbose = process.env.ICMPFWD_BUILD_VERBOSE === "1";
  // One file for stdout and stderr, so node-gyp's lines and the compiler's stay in order.
  const logDir = mkdtempSync(join(tmpdir(), "icmpfwd-build-"));
  const logPath = join(logDir, "node-gyp.log");
  const logFd = openSync(logPath, "w");
  const result = spawnSync(command, [...head, ...args], {
    cwd: dirname(directory),
    stdio: verbose ? "inherit" : ["ignore", logFd, logFd],
  });
  closeSync(logFd);
  const output = readFileSync(logPath, "utf8");
  rmSync(logDir, { recursive: true, force: true });
  if (result.error) return `${command}: ${result.error.message}`;
  if (result.status !== 0) {
    if (!verbose) process.stderr.write(output);
    return `node-gyp exited with ${result.status ?? result.signal}; ${TOOLCHAIN_HINT} and see the output above`;
  }
  return null;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
  const failed = buildAddon(join(root, "native"));
  if (failed !== null) {
    process.stderr.write(
      `@icmpfwd/client: warning: the ICMP socket addon was not built (${failed}); every policy but relay works without it\n`,
    );
  }
}
