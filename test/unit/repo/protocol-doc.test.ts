/** docs/protocol.md is generated from the proto comments (scripts/gen-protocol-doc.ts). */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  currentProtocolDoc,
  DOC_PATH,
  parseProto,
  renderProtocolDoc,
} from "../../../scripts/gen-protocol-doc.js";

describe("docs/protocol.md", () => {
  it("is regenerated from the current protos unchanged (run `npm run docs:protocol` after editing proto/)", () => {
    expect(readFileSync(DOC_PATH, "utf8")).toBe(currentProtocolDoc());
  });

  it("renders each declaration with the comment above it", () => {
    const f = parseProto(
      "x.proto",
      [
        "// File header.",
        'syntax = "proto3";',
        "package icmpfwd.v1;",
        "// Says hi.",
        "service S {",
        "  // One call.",
        "  rpc Call(A) returns (stream A);",
        "}",
        "// A thing.",
        "message A {",
        "  // Its name.",
        "  repeated string name = 1;",
        "  oneof choice {",
        "    A inner = 2;",
        "  }",
        "  map<string, uint64> counters = 3;",
        "}",
      ].join("\n"),
    );
    const doc = renderProtocolDoc([f]);
    expect(doc).toContain("File header.");
    expect(doc).toContain("| `Call` | [A](#a) | stream [A](#a) | One call. |");
    expect(doc).toContain("| `name` | 1 | repeated string | Its name. |");
    expect(doc).toContain("| `inner` | 2 | [A](#a) (oneof `choice`) |  |");
    expect(doc).toContain("| `counters` | 3 | map<string, uint64> |  |");
  });

  it("refuses proto text it cannot read, naming the line", () => {
    expect(() =>
      parseProto("y.proto", 'syntax = "proto3";\nmessage A {\n  extensions 100 to 199;\n}'),
    ).toThrow("y.proto:3: cannot read: extensions 100 to 199;");
  });
});
