/** docs/options.md is generated from src/config.ts's SPECS (scripts/gen-options-doc.ts). */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  currentOptionsDoc,
  OPTIONS_DOC_PATH,
  renderOptionsDoc,
} from "../../../scripts/gen-options-doc.js";
import { OPTIONS } from "../../../src/config.js";

describe("docs/options.md", () => {
  it("is regenerated from src/config.ts unchanged (run `npm run docs:options` after editing SPECS)", () => {
    expect(readFileSync(OPTIONS_DOC_PATH, "utf8")).toBe(currentOptionsDoc());
  });

  it("has one row per option, with its flag, key and variable", () => {
    const doc = readFileSync(OPTIONS_DOC_PATH, "utf8");
    const rows = doc.split("\n").filter((l) => l.startsWith("| `--"));
    expect(rows.length).toBe(OPTIONS.length);
    for (const o of OPTIONS) {
      expect(doc).toContain(`\`${o.key}\``);
      expect(doc).toContain(o.flag);
    }
  });

  it("renders defaults by kind: switches on/off, lists, unset options", () => {
    const doc = renderOptionsDoc([
      { key: "fooBar", flag: "--foo-bar", kind: "bool", description: "a | b", default: true },
      { key: "items", flag: "--item", kind: "list", description: "x", default: ["a", "b"] },
      { key: "limit", flag: "--limit", kind: "int", description: "y", default: undefined },
    ]);
    expect(doc).toContain("| `--foo-bar` (switch) | `fooBar` | `ICMPFWD_FOO_BAR` | on | a \\| b |");
    expect(doc).toContain("| `--item VALUE…` | `items` | `ICMPFWD_ITEMS` | `a`, `b` | x |");
    expect(doc).toContain("| `--limit N` | `limit` | `ICMPFWD_LIMIT` | – | y |");
  });
});
