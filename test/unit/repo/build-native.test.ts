/**
 * `npm install` stays quiet unless the addon's build fails: scripts/build-native.mjs keeps
 * node-gyp's output to itself on success and prints all of it (node-gyp's lines and the
 * compiler's, in order) on failure. Each build runs on a copy of native/ in a temp directory,
 * so the addon the other tests load is never rebuilt under them.
 */
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "./doc-blocks.js";

const BUILD_TIMEOUT_MS = 180_000;
const toolchain = ["make", "g++", "python3"].every(
  (t) => spawnSync("sh", ["-c", `command -v ${t}`]).status === 0,
);
const inCI = process.env.CI === "true" || process.env.CI === "1";
if (!toolchain && inCI) throw new Error("build-native: make, g++ and python3 are required in CI");

const copies: string[] = [];
afterAll(() => {
  for (const dir of copies) rmSync(dir, { recursive: true, force: true });
});

/** A copy of what the install script needs: itself, the client's build step, native/'s sources. */
function copyProject(): string {
  const dir = mkdtempSync(join(tmpdir(), "icmpfwd-build-native-"));
  copies.push(dir);
  mkdirSync(join(dir, "scripts"));
  mkdirSync(join(dir, "native"));
  cpSync(join(REPO_ROOT, "scripts/build-native.mjs"), join(dir, "scripts/build-native.mjs"));
  mkdirSync(join(dir, "clients/ts/scripts"), { recursive: true });
  cpSync(
    join(REPO_ROOT, "clients/ts/scripts/build-addon.mjs"),
    join(dir, "clients/ts/scripts/build-addon.mjs"),
  );
  for (const f of ["binding.gyp", "tun.cc"])
    cpSync(join(REPO_ROOT, "native", f), join(dir, "native", f));
  return dir;
}

function build(dir: string, path: string): { status: number | null; output: string } {
  const r = spawnSync(process.execPath, [join(dir, "scripts/build-native.mjs")], {
    cwd: dir,
    encoding: "utf8",
    timeout: BUILD_TIMEOUT_MS,
    // node-addon-api (binding.gyp asks node for it) from the repository's node_modules.
    env: { ...process.env, PATH: path, NODE_PATH: join(REPO_ROOT, "node_modules") },
  });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describe.skipIf(!toolchain)("scripts/build-native.mjs (npm's install script)", () => {
  it("a good build prints nothing", { timeout: BUILD_TIMEOUT_MS }, () => {
    const dir = copyProject();
    const r = build(dir, process.env.PATH ?? "");
    expect(r.output).toBe("");
    expect(r.status).toBe(0);
    expect(existsSync(join(dir, "native/build/Release/icmpfwd_tun.node"))).toBe(true);
  });

  it("a failed build prints node-gyp's and the compiler's output, then the hint", {
    timeout: BUILD_TIMEOUT_MS,
  }, () => {
    const dir = copyProject();
    const fake = join(dir, "fake-bin");
    mkdirSync(fake);
    writeFileSync(
      join(fake, "g++"),
      '#!/bin/sh\necho "g++: error: simulated compiler failure" >&2\nexit 1\n',
    );
    chmodSync(join(fake, "g++"), 0o755);
    const r = build(dir, `${fake}${delimiter}${process.env.PATH ?? ""}`);
    expect(r.status).toBe(1);
    expect(r.output).toContain("g++: error: simulated compiler failure");
    expect(r.output).toContain("gyp ERR!");
    expect(r.output.trimEnd().split("\n").at(-1)).toBe(
      "icmpfwd: cannot build the TUN addon: node-gyp exited with 1; install the toolchain with: apt-get install -y build-essential python3 and see the output above",
    );
  });
});
