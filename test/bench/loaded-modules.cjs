// The module-load and heap profile of a running process, for the footprint work:
//   MODULES_OUT=/tmp/p.json node --require ./test/bench/loaded-modules.cjs dist/main.js serve
//   kill -USR2 <pid>   # writes MODULES_OUT: process.memoryUsage(), V8's heap spaces (KiB) and
//                      # the CommonJS modules loaded, by package (files, source bytes)
// Every dependency the daemon loads at rest is CommonJS (grpc-js, OpenTelemetry, protobufjs,
// pino, commander), so Module._cache lists them; the daemon's own ES modules are not in it.
const Module = require("node:module");
const fs = require("node:fs");
const v8 = require("node:v8");

process.on("SIGUSR2", () => {
  const byPackage = new Map();
  for (const file of Object.keys(Module._cache)) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
    const name = m ? m[1] : "(outside node_modules)";
    const e = byPackage.get(name) ?? { files: 0, bytes: 0 };
    e.files++;
    e.bytes += fs.statSync(file, { throwIfNoEntry: false })?.size ?? 0;
    byPackage.set(name, e);
  }
  const spaces = Object.fromEntries(
    v8.getHeapSpaceStatistics().map((s) => [s.space_name, Math.round(s.space_used_size / 1024)]),
  );
  const packages = [...byPackage].sort((a, b) => b[1].bytes - a[1].bytes);
  const out = { memory: process.memoryUsage(), spaces, packages };
  fs.writeFileSync(process.env.MODULES_OUT ?? "loaded-modules.json", JSON.stringify(out, null, 1));
});
