/**
 * @icmpfwd/client carries its own generated code (clients/ts/src/gen, from buf.gen.client.yaml)
 * so that the package never imports the service's src/: it must match proto/ as it is now.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

const root = fileURLToPath(new URL("../../..", import.meta.url));
const bin = join(root, "node_modules", ".bin");

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

const names = (d: string): string[] =>
  files(d)
    .map((f) => relative(d, f))
    .sort();

it("has clients/ts/src/gen generated from the current protos (run `npm run gen` after editing them)", () => {
  const out = mkdtempSync(join(tmpdir(), "icmpfwd-client-gen-"));
  const r = spawnSync(
    join(bin, "buf"),
    ["generate", "--template", "buf.gen.client.yaml", "--output", out],
    {
      cwd: root,
      env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}` },
      encoding: "utf8",
    },
  );
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  const fresh = join(out, "clients", "ts", "src", "gen");
  const committed = join(root, "clients", "ts", "src", "gen");
  expect(names(committed)).toEqual([
    "google/protobuf/duration.ts",
    "google/protobuf/timestamp.ts",
    "icmpfwd/v1/forwarder.ts",
  ]);
  expect(names(fresh)).toEqual(names(committed));
  for (const name of names(fresh)) {
    expect(readFileSync(join(committed, name), "utf8"), name).toBe(
      readFileSync(join(fresh, name), "utf8"),
    );
  }
});

it("@icmpfwd/client imports nothing from outside clients/ts (no ../../../src)", () => {
  const src = join(root, "clients", "ts", "src");
  for (const f of files(src).filter((p) => p.endsWith(".ts"))) {
    const text = readFileSync(f, "utf8");
    for (const m of text.matchAll(/from "(\.[^"]+)"/g)) {
      const target = join(f, "..", m[1]);
      expect(relative(src, target).startsWith(".."), `${relative(root, f)}: ${m[1]}`).toBe(false);
    }
  }
});
