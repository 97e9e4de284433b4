import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../..", import.meta.url));
const bin = join(root, "node_modules", ".bin");
const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}` };

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

describe("the wire contract (proto/icmpfwd/v1)", () => {
  it("passes buf lint", () => {
    const r = spawnSync(join(bin, "buf"), ["lint"], { cwd: root, env, encoding: "utf8" });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("makes no breaking change against the main branch (buf breaking)", () => {
    const against = ".git#branch=main";
    const r = spawnSync(join(bin, "buf"), ["breaking", "--against", against], {
      cwd: root,
      env,
      encoding: "utf8",
    });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("has src/gen generated from the current protos (run `npm run gen` after editing them)", () => {
    const out = mkdtempSync(join(tmpdir(), "icmpfwd-gen-"));
    const r = spawnSync(join(bin, "buf"), ["generate", "--output", out], {
      cwd: root,
      env,
      encoding: "utf8",
    });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const fresh = join(out, "src", "gen");
    const committed = join(root, "src", "gen");
    const names = (d: string) =>
      files(d)
        .map((f) => relative(d, f))
        .sort();
    expect(names(fresh)).toEqual(names(committed));
    for (const name of names(fresh)) {
      expect(readFileSync(join(committed, name), "utf8"), name).toBe(
        readFileSync(join(fresh, name), "utf8"),
      );
    }
  });
});
