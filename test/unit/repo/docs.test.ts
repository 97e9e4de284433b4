/**
 * The documentation's own rules: every shell block says whether the doc test runs it, the
 * expectations under runnable blocks are valid, relative links lead to files that exist, and
 * no doc points at files outside the repository. test/e2e/docs.test.ts runs the runnable blocks.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { isShell, parseDoc, REPO_ROOT, repoDocs } from "./doc-blocks.js";

const docs = repoDocs();

describe("docs", () => {
  it("every shell block in README.md and docs/*.md is marked runnable or illustrative", () => {
    const unmarked = docs
      .flatMap((d) => d.blocks)
      .filter((b) => isShell(b) && b.kind === null)
      .map((b) => `${b.file}:${b.line} (\`\`\`${b.language})`);
    expect(unmarked).toEqual([]);
  });

  it("expectations follow runnable shell blocks only, and each is a valid regex", () => {
    const problems: string[] = [];
    for (const b of docs.flatMap((d) => d.blocks)) {
      if ((b.expect.length > 0 || b.expectExit !== 0) && !(isShell(b) && b.kind === "runnable"))
        problems.push(`${b.file}:${b.line}: expectations under a block the doc test does not run`);
      for (const e of b.expect) {
        try {
          new RegExp(e, "m");
        } catch (err) {
          problems.push(`${b.file}:${b.line}: ${(err as Error).message}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it("no doc mentions ../shared or DESIGN.md", () => {
    const offending = docs
      .map((d) => ({ file: d.file, text: readFileSync(join(REPO_ROOT, d.file), "utf8") }))
      .filter(({ text }) => text.includes("../shared") || /DESIGN\.md/i.test(text))
      .map(({ file }) => file);
    expect(offending).toEqual([]);
  });

  it("relative links in README.md and docs/*.md lead to files that exist", () => {
    const broken: string[] = [];
    for (const d of docs) {
      const text = readFileSync(join(REPO_ROOT, d.file), "utf8");
      for (const m of text.matchAll(/\]\(([^)\s#]+)(#[^)\s]*)?\)/g)) {
        const target = m[1];
        if (/^[a-z]+:/.test(target)) continue; // http:, https:, file:
        if (!existsSync(join(REPO_ROOT, dirname(d.file), target)))
          broken.push(`${d.file}: ${target}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it("reads the doc-block convention: kinds, expectations, exit status, own-service", () => {
    const doc = parseDoc(
      "x.md",
      [
        "<!-- docs-test: own-service -->",
        "```sh runnable",
        "echo hi",
        "```",
        "<!-- expect: ^hi$ -->",
        "<!-- expect-exit: 3 -->",
        "",
        "```bash illustrative",
        "systemctl start x",
        "```",
        "```console",
        "$ ls",
        "```",
        "```ts",
        "const x = 1;",
        "```",
      ].join("\n"),
    );
    expect(doc.ownService).toBe(true);
    expect(
      doc.blocks.map((b) => [b.line, b.language, b.kind, b.code, b.expect, b.expectExit]),
    ).toEqual([
      [2, "sh", "runnable", "echo hi", ["^hi$"], 3],
      [8, "bash", "illustrative", "systemctl start x", [], 0],
      [11, "console", null, "$ ls", [], 0],
      [14, "ts", null, "const x = 1;", [], 0],
    ]);
    expect(doc.blocks.filter(isShell).length).toBe(3);
  });
});
