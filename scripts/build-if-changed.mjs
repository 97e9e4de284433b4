#!/usr/bin/env node
// The service's build. `npm start` runs it bare: nothing happens when dist/ is newer than every
// source file (a restart then takes no compiler at all), else the incremental build
// (tsconfig.build.json keeps dist/.tsbuildinfo, so only what changed is checked and emitted
// again). `--force` (npm run build) always runs the incremental build.
import { spawnSync } from "node:child_process";
import { chmodSync, readdirSync, statSync, utimesSync } from "node:fs";
import { join } from "node:path";

const stamp = "dist/.tsbuildinfo";
const inputs = ["src", "tsconfig.json", "tsconfig.build.json", "package.json"];

function newest(path) {
  const s = statSync(path);
  if (!s.isDirectory()) return s.mtimeMs;
  let m = s.mtimeMs;
  for (const e of readdirSync(path)) m = Math.max(m, newest(join(path, e)));
  return m;
}

let built = 0;
try {
  built = statSync(stamp).mtimeMs;
} catch {
  // Never built: build.
}
const force = process.argv.includes("--force");
if (!force && built > 0 && Math.max(...inputs.map(newest)) <= built) process.exit(0);
const r = spawnSync("npx", ["tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" });
if (r.status !== 0) process.exit(r.status ?? 1);
// tsc leaves the build info untouched when nothing changed: mark the build as current.
utimesSync(stamp, new Date(), new Date());
// The `icmpfwd` command (package.json bin, linked by `npm link`) runs dist/main.js directly.
chmodSync("dist/main.js", 0o755);
