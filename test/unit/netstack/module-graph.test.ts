/**
 * The netstack's module structure: the import graph of src/netstack (type-only imports and
 * re-exports included) has no cycle, nothing in it reaches outside src/netstack, and the network
 * protocols see the stack only through protocol.ts (they never import stack.ts).
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../../src/netstack", import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? sourceFiles(join(dir, e.name))
      : e.name.endsWith(".ts")
        ? [join(dir, e.name)]
        : [],
  );
}

/** Every module specifier of a file: imports, `import type`, re-exports, dynamic imports. */
function specifiers(file: string): string[] {
  return ts
    .preProcessFile(readFileSync(file, "utf8"), true, true)
    .importedFiles.map((f) => f.fileName);
}

/** A file's imports as paths relative to src/netstack (`.js` specifiers name `.ts` sources). */
interface Edges {
  readonly local: string[];
  /** Specifiers that leave src/netstack (relative ones resolved to a path from it). */
  readonly outside: string[];
}

function edgesOf(file: string): Edges {
  const local: string[] = [];
  const outside: string[] = [];
  for (const spec of specifiers(file)) {
    if (spec.startsWith("node:")) continue;
    if (!spec.startsWith(".")) {
      outside.push(spec);
      continue;
    }
    const target = relative(ROOT, resolve(dirname(file), spec.replace(/\.js$/, ".ts")));
    if (target.startsWith("..")) outside.push(target);
    else local.push(target);
  }
  return { local, outside };
}

const graph = new Map<string, Edges>(sourceFiles(ROOT).map((f) => [relative(ROOT, f), edgesOf(f)]));

/** The first cycle a depth-first walk meets, as a path that starts and ends on one file. */
function findCycle(): string[] | null {
  const done = new Set<string>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const visit = (node: string): string[] | null => {
    if (onStack.has(node)) return [...stack.slice(stack.indexOf(node)), node];
    if (done.has(node)) return null;
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node)?.local ?? []) {
      const cycle = visit(next);
      if (cycle !== null) return cycle;
    }
    stack.pop();
    onStack.delete(node);
    done.add(node);
    return null;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node);
    if (cycle !== null) return cycle;
  }
  return null;
}

describe("netstack module graph", () => {
  it("covers the protocols, the stack and the public index", () => {
    for (const f of ["index.ts", "stack.ts", "protocol.ts", "ipv4/protocol.ts", "ipv6/icmp.ts"])
      expect(graph.has(f), f).toBe(true);
  });

  it("every import resolves to a file of src/netstack", () => {
    for (const [file, { local }] of graph) {
      for (const target of local) expect(graph.has(target), `${file} -> ${target}`).toBe(true);
    }
  });

  it("has no import cycle, type-only imports included", () => {
    const cycle = findCycle();
    expect(cycle === null ? "no cycle" : cycle.join(" -> ")).toBe("no cycle");
  });

  it("imports nothing from outside src/netstack (src/link, src/service, src/telemetry, packages)", () => {
    const leaks = [...graph].flatMap(([file, { outside }]) =>
      outside.map((t) => `${file} -> ${t}`),
    );
    expect(leaks).toEqual([]);
  });

  it("only the public index imports stack.ts; ipv4/, ipv6/, icmp/ and echo.ts never do", () => {
    const importers = [...graph]
      .filter(([, { local }]) => local.includes("stack.ts"))
      .map(([file]) => file);
    expect(importers).toEqual(["index.ts"]);
  });
});
