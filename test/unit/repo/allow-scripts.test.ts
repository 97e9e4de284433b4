/**
 * package.json's allowScripts decides every dependency that has an install script, so
 * `npm install` prints no "not yet covered by allowScripts" warning (docs/operations.md,
 * "Installing"). Entries are by name: this machine's npm writes lockfiles without `resolved`
 * URLs (omit-lockfile-registry-resolved), and npm cannot match a pinned `name@version` then.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./doc-blocks.js";

interface LockPackage {
  version?: string;
  hasInstallScript?: boolean;
  link?: boolean;
}

const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as {
  allowScripts?: Record<string, boolean>;
};
const lock = JSON.parse(readFileSync(join(REPO_ROOT, "package-lock.json"), "utf8")) as {
  packages: Record<string, LockPackage>;
};

/** The package name of a lockfile key such as node_modules/a/node_modules/@s/b. */
function nameOf(key: string): string {
  return key.slice(key.lastIndexOf("node_modules/") + "node_modules/".length);
}

describe("allowScripts", () => {
  it("allowScripts decides every dependency with an install script in package-lock.json", () => {
    const policy = pkg.allowScripts ?? {};
    const undecided = Object.entries(lock.packages)
      // A workspace folder (clients/ts: the ICMP addon's build) is the project's own code: npm
      // does not ask about it.
      .filter(([key, p]) => key.includes("node_modules/") && p.hasInstallScript === true && !p.link)
      .map(([key]) => nameOf(key))
      .filter((name) => !(name in policy));
    expect(undecided).toEqual([]);
  });

  it("names no package that has no install script any more", () => {
    const withScripts = new Set(
      Object.entries(lock.packages)
        .filter(([key, p]) => key !== "" && p.hasInstallScript === true)
        .map(([key]) => nameOf(key)),
    );
    expect(Object.keys(pkg.allowScripts ?? {}).filter((n) => !withScripts.has(n))).toEqual([]);
  });
});
