/**
 * The shell blocks of README.md and docs/*.md, as the doc tests read them (the convention is
 * written down in docs/testing.md, "Docs that are tested"):
 *
 * - every fenced block whose language is sh, bash, shell or console carries `runnable` or
 *   `illustrative` right after it ("```sh runnable");
 * - a runnable block may be followed, on the lines right after its closing fence, by
 *   `<!-- expect: REGEX -->` (the block's output, stdout and stderr together, must match; one
 *   line each) and `<!-- expect-exit: N -->` (the exit status; 0 when absent);
 * - `<!-- docs-test: own-service -->` anywhere in a file: its blocks start the service they need
 *   themselves, so the doc test starts none for that file.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT: string = fileURLToPath(new URL("../../..", import.meta.url));
export const SHELL_LANGUAGES: readonly string[] = ["sh", "bash", "shell", "console"];

export interface DocBlock {
  /** Relative to the repository root, e.g. docs/operations.md. */
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  language: string;
  /** "runnable", "illustrative", or null when the block carries neither. */
  kind: "runnable" | "illustrative" | null;
  code: string;
  expect: string[];
  expectExit: number;
}

export interface DocFile {
  file: string;
  ownService: boolean;
  blocks: DocBlock[];
}

const FENCE = /^(\s*)(`{3,}|~{3,})\s*([^\s`]*)\s*(.*)$/;
const EXPECT = /^<!--\s*expect:\s?(.*?)\s*-->\s*$/;
const EXPECT_EXIT = /^<!--\s*expect-exit:\s*(\d+)\s*-->\s*$/;

/** Every fenced block of a Markdown text (shell or not), with its expectations. */
export function parseDoc(file: string, text: string): DocFile {
  const lines = text.split("\n");
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]);
    if (open === null) continue;
    const fence = open[2];
    const language = open[3].toLowerCase();
    const words = open[4].split(/\s+/).filter((w) => w !== "");
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !lines[j].trim().startsWith(fence)) body.push(lines[j++]);
    const block: DocBlock = {
      file,
      line: i + 1,
      language,
      kind: words.includes("runnable")
        ? "runnable"
        : words.includes("illustrative")
          ? "illustrative"
          : null,
      code: body.join("\n"),
      expect: [],
      expectExit: 0,
    };
    let k = j + 1;
    for (; k < lines.length; k++) {
      const e = EXPECT.exec(lines[k].trim());
      const x = EXPECT_EXIT.exec(lines[k].trim());
      if (e !== null) block.expect.push(e[1]);
      else if (x !== null) block.expectExit = Number(x[1]);
      else break;
    }
    blocks.push(block);
    i = j;
  }
  return { file, ownService: /<!--\s*docs-test:\s*own-service\s*-->/.test(text), blocks };
}

/** README.md and every docs/*.md, parsed. */
export function repoDocs(root: string = REPO_ROOT): DocFile[] {
  const paths = [
    join(root, "README.md"),
    ...readdirSync(join(root, "docs"))
      .filter((f) => f.endsWith(".md"))
      .sort()
      .map((f) => join(root, "docs", f)),
  ];
  return paths.map((p) => parseDoc(relative(root, p), readFileSync(p, "utf8")));
}

export function isShell(block: DocBlock): boolean {
  return SHELL_LANGUAGES.includes(block.language);
}
