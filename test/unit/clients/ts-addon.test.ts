/**
 * The client package's ICMP addon is optional: its install script warns in one line and exits 0
 * without a toolchain (a policy author who never relays can still install the package), and
 * `icmpfwd-policy relay` without the addon stops at start with one line saying how to build it.
 * Both run on copies in a temp directory, so the addon the other tests load is never touched.
 */
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const CLIENT = fileURLToPath(new URL("../../../clients/ts", import.meta.url));
const ROOT_MODULES = fileURLToPath(new URL("../../../node_modules", import.meta.url));

const copies: string[] = [];
afterAll(() => {
  for (const dir of copies) rmSync(dir, { recursive: true, force: true });
});

/** A copy of the client package: its package.json, sources, native/ and build script. */
function copyClient(): string {
  const dir = mkdtempSync(join(tmpdir(), "icmpfwd-client-copy-"));
  copies.push(dir);
  for (const f of ["package.json", "src", "scripts"])
    cpSync(join(CLIENT, f), join(dir, f), { recursive: true });
  mkdirSync(join(dir, "native"));
  for (const f of ["binding.gyp", "icmp_socket.cc"])
    cpSync(join(CLIENT, "native", f), join(dir, "native", f));
  symlinkSync(ROOT_MODULES, join(dir, "node_modules"));
  return dir;
}

describe("the client's optional ICMP addon", () => {
  it("without a toolchain the install script warns in one line and exits 0", () => {
    const dir = copyClient();
    const empty = mkdtempSync(join(tmpdir(), "icmpfwd-empty-path-"));
    copies.push(empty);
    const r = spawnSync(process.execPath, [join(dir, "scripts/build-addon.mjs")], {
      cwd: dir,
      encoding: "utf8",
      env: { ...process.env, PATH: empty },
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      "@icmpfwd/client: warning: the ICMP socket addon was not built (make, g++, python3 not found; install the toolchain with: apt-get install -y build-essential python3); every policy but relay works without it\n",
    );
  });

  it("relay without the addon stops at start: exit 1, one line naming the toolchain and the rebuild", () => {
    const dir = copyClient();
    const r = spawnSync(
      process.execPath,
      [
        "--import",
        "tsx",
        join(dir, "src/cli.ts"),
        "relay",
        "--allow",
        "198.18.30.0/24",
        "--target",
        "127.0.0.1:1",
      ],
      { cwd: dir, encoding: "utf8", timeout: 30_000 },
    );
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]) as { level: string; msg: string };
    expect(line.level).toBe("error");
    expect(line.msg).toMatch(
      /^relay: the ICMP socket addon is not built \(.+\): apt-get install -y build-essential python3, then npm rebuild @icmpfwd\/client$/,
    );
  });
});
