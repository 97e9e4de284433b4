/**
 * clients/python: the checked-in stubs match the protos (regenerated with Debian's protoc and
 * grpc_python_plugin into a temp dir, compared byte for byte), the package compiles, and its
 * Python unit tests pass under Debian's /usr/bin/python3. A missing tool skips with the reason;
 * under CI=true it fails instead.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const inCI = process.env.CI === "true" || process.env.CI === "1";
const dir = fileURLToPath(new URL("../../../clients/python", import.meta.url));
const gen = join(dir, "icmpfwd_client", "gen");
const PYTHON = "/usr/bin/python3";

function has(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

function missing(): string | null {
  const tools = ["protoc", "grpc_python_plugin"].filter((t) => !has(t));
  if (tools.length > 0)
    return `missing ${tools.join(", ")} (protobuf-compiler, protobuf-compiler-grpc)`;
  if (!existsSync(PYTHON)) return `${PYTHON} is missing`;
  const r = spawnSync(PYTHON, ["-c", "import grpc, google.protobuf"], { stdio: "ignore" });
  if (r.status !== 0) return "python3-grpcio / python3-protobuf are not installed";
  return null;
}

const why = missing();
if (why !== null && inCI) throw new Error(`the Python client tests need: ${why}`);
const d = why === null ? describe : describe.skip;

d(`the Python client (clients/python)${why === null ? "" : ` (skipped: ${why})`}`, () => {
  it("has icmpfwd_client/gen generated from the current protos (run clients/python/generate.sh)", () => {
    const out = mkdtempSync(join(tmpdir(), "icmpfwd-pygen-"));
    const r = spawnSync(join(dir, "generate.sh"), [out], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const names = readdirSync(gen).filter((n) => n.endsWith(".py"));
    expect(readdirSync(out).sort()).toEqual(names.sort());
    for (const n of names) {
      expect(readFileSync(join(out, n)).equals(readFileSync(join(gen, n))), `${n} is stale`).toBe(
        true,
      );
    }
  });

  it("compiles, and its Python unit tests pass", () => {
    const files = [
      "__init__.py",
      "__main__.py",
      "cli.py",
      "client.py",
      "deps.py",
      "logs.py",
      "policies.py",
      "rtt.py",
      "targets.py",
    ];
    const c = spawnSync(
      PYTHON,
      ["-m", "py_compile", ...files.map((f) => join(dir, "icmpfwd_client", f))],
      {
        encoding: "utf8",
      },
    );
    expect(c.stderr).toBe("");
    const r = spawnSync(PYTHON, ["-m", "unittest", "discover", "-s", "tests"], {
      cwd: dir,
      encoding: "utf8",
      env: { ...process.env, PYTHONPATH: dir, PYTHONDONTWRITEBYTECODE: "1" },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^OK$/m);
  });
});
