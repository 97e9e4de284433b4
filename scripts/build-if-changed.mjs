#!/usr/bin/env node
// `npm start`'s build: nothing when dist/ is newer than every source file (a restart then takes
// no compiler at all), else the incremental build (tsconfig.build.json keeps dist/.tsbuildinfo,
// so only what changed is checked and emitted again).
import { spawnSync } from "node:child_process";
import { readdirSync, statSync, utimesSync } from "node:fs";
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
if (built > 0 && Math.max(...inputs.map(newest)) <= built) process.exit(0);
const r = spawnSync("npx", ["tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" });
// tsc leaves the build info untouched when nothing changed: mark the build as current.
if (r.status === 0) utimesSync(stamp, new Date(), new Date());
process.exit(r.status ?? 1);
