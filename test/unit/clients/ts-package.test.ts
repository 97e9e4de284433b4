/**
 * @icmpfwd/client's package shape: what package.json points at is what the build makes from
 * src/, and the ten-line policy in the docs is examples/even.ts as it is.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

const root = fileURLToPath(new URL("../../..", import.meta.url));
const read = (p: string): string => readFileSync(join(root, p), "utf8");

interface Manifest {
  name: string;
  main: string;
  types: string;
  exports: Record<string, { types: string; import: string } | string>;
  bin: Record<string, string>;
  files: string[];
  dependencies: Record<string, string>;
  scripts: Record<string, string>;
}

/** The first fenced ```ts block of a markdown file. */
const firstTsBlock = (md: string): string => /```ts\n([\s\S]*?)```/.exec(md)?.[1] ?? "";

it("package.json names dist/index.js, dist/cli.js and their types, each built from a file in src/", () => {
  const m = JSON.parse(read("clients/ts/package.json")) as Manifest;
  expect(m.name).toBe("@icmpfwd/client");
  expect(m.main).toBe("./dist/index.js");
  expect(m.types).toBe("./dist/index.d.ts");
  expect(m.exports["."]).toEqual({ types: "./dist/index.d.ts", import: "./dist/index.js" });
  expect(m.bin).toEqual({ "icmpfwd-policy": "./dist/cli.js" });
  expect(m.files).toContain("dist");
  expect(m.scripts.prepare).toBe("npm run build --silent");
  for (const [, e] of Object.entries(m.exports)) {
    if (typeof e === "string") continue;
    const src = e.import.replace("./dist/", "clients/ts/src/").replace(/\.js$/, ".ts");
    expect(existsSync(join(root, src)), src).toBe(true);
  }
  expect(existsSync(join(root, "clients/ts/src/cli.ts"))).toBe(true);
  // Everything the sources import from npm is a dependency of the package itself.
  for (const dep of ["@grpc/grpc-js", "@bufbuild/protobuf", "@opentelemetry/api", "commander"]) {
    expect(Object.keys(m.dependencies)).toContain(dep);
  }
  const rootManifest = JSON.parse(read("package.json")) as { workspaces: string[] };
  expect(rootManifest.workspaces).toEqual(["clients/ts"]);
});

it("the ten-line policy in clients/README.md and the package README is examples/even.ts", () => {
  const example = read("examples/even.ts");
  expect(example.split("\n").filter((l) => l !== "")).toHaveLength(10);
  expect(firstTsBlock(read("clients/README.md"))).toBe(example);
  expect(firstTsBlock(read("clients/ts/README.md"))).toBe(example);
});
