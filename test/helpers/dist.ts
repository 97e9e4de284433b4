/**
 * dist/ for tests that load the built package: built (tsc -p tsconfig.build.json) when it is
 * missing or older than a source file, so such a test passes on its own, without `npm run build`.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));

/** How long a cold build may take on a loaded machine. */
export const BUILD_TIMEOUT_MS = 300_000;

const BUILT = ["netstack/index.js", "netstack/index.d.ts", "link/index.js", "link/index.d.ts"].map(
  (f) => join(root, "dist", f),
);

const newest = (dir: string): number =>
  Math.max(
    0,
    ...readdirSync(dir, { withFileTypes: true }).map((e) =>
      e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs,
    ),
  );

function distIsCurrent(): boolean {
  if (!BUILT.every((f) => existsSync(f))) return false;
  const built = Math.min(...BUILT.map((f) => statSync(f).mtimeMs));
  const config = ["tsconfig.json", "tsconfig.build.json"].map(
    (f) => statSync(join(root, f)).mtimeMs,
  );
  return built >= Math.max(newest(join(root, "src")), ...config);
}

/** Builds dist/ unless it is newer than every file under src/ and the tsconfigs. */
export function ensureDist(): void {
  if (distIsCurrent()) return;
  const tsc = join(root, "node_modules", ".bin", "tsc");
  const r = spawnSync(tsc, ["-p", join(root, "tsconfig.build.json")], {
    cwd: root,
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`building dist/ failed:\n${r.stdout}${r.stderr}`);
}
