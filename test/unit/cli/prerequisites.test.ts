/** The one list of Debian packages the tests use (scripts/prerequisites.mjs). */
import { describe, expect, it } from "vitest";
import { PREREQUISITES } from "../../../scripts/prerequisites.mjs";

describe("scripts/prerequisites.mjs", () => {
  it("names each package once, with why and which tests, including promtool and venv", () => {
    const names = PREREQUISITES.map((p) => p.pkg);
    expect(new Set(names).size).toBe(names.length);
    for (const p of PREREQUISITES) {
      expect(p.why, p.pkg).not.toBe("");
      expect(p.tests, p.pkg).not.toBe("");
    }
    expect(names).toEqual(expect.arrayContaining(["prometheus", "python3-venv", "tshark"]));
    expect(names).toEqual(expect.arrayContaining(["docker.io", "docker-compose", "debootstrap"]));
  });
});
