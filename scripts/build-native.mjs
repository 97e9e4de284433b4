#!/usr/bin/env node
// Builds the TUN addon (native/ → native/build/Release/icmpfwd_tun.node) with node-gyp, offline,
// against the headers of the Node that runs this script. It is the package's "install" script:
// npm runs it for `npm ci` / `npm install` / `npm rebuild icmpfwd`. node-gyp's own output (some
// 50 lines of `gyp info`) is captured and printed only when the build fails, so a good install
// stays quiet; ICMPFWD_BUILD_VERBOSE=1 prints it always.
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const hint = "install the toolchain with: apt-get install -y build-essential python3";

function fail(message) {
  process.stderr.write(`icmpfwd: cannot build the TUN addon: ${message}\n`);
  process.exit(1);
}

function onPath(command) {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir !== "" && existsSync(join(dir, command))) return join(dir, command);
  }
  return null;
}

if (process.platform !== "linux") fail(`TUN devices are Linux-only (this is ${process.platform})`);

const missing = ["make", "g++", "python3"].filter((tool) => onPath(tool) === null);
if (missing.length > 0) fail(`${missing.join(", ")} not found; ${hint}`);

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

const gyp = nodeGypCommand();
if (gyp === null) fail(`node-gyp not found (it ships with npm; run this through npm); ${hint}`);

const args = ["rebuild", "--directory", join(root, "native")];
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
  cwd: root,
  stdio: verbose ? "inherit" : ["ignore", logFd, logFd],
});
closeSync(logFd);
const output = readFileSync(logPath, "utf8");
rmSync(logDir, { recursive: true, force: true });
if (result.error) fail(`${command}: ${result.error.message}`);
if (result.status !== 0) {
  if (!verbose) process.stderr.write(output);
  fail(`node-gyp exited with ${result.status ?? result.signal}; ${hint} and see the output above`);
}
