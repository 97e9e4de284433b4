#!/usr/bin/env node
// `npm run cluster -- up|down|status [--dir DIR] [--no-build]`: the offline local cluster in one
// command (docs/cluster.md).
//
//   up      npm run build; a private Docker engine in its own network namespace
//           (scripts/local-engine.sh); the offline images (scripts/local-images.sh);
//           docker-compose up -d of docker-compose.yml + deploy/compose.offline.yml with a random
//           bearer token. Prints how to reach it. A failure part-way tears everything down.
//   down    docker-compose down, then the engine, its containers, mounts and namespace, and DIR.
//   status  what runs (docker-compose ps), or "not running".
//
// DIR (default $ICMPFWD_CLUSTER_DIR or /tmp/icmpfwd-cluster) holds the engine (DIR/engine), the
// token (DIR/token) and state.json; `down` removes it. Needs root (the engine, its namespace).
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const ENGINE = join(ROOT, "scripts/local-engine.sh");
const IMAGES = join(ROOT, "scripts/local-images.sh");
const FILES = ["-f", "docker-compose.yml", "-f", "deploy/compose.offline.yml"];

function usage(code) {
  process.stderr.write("usage: npm run cluster -- up|down|status [--dir DIR] [--no-build]\n");
  process.exit(code);
}

const args = process.argv.slice(2);
const cmd = args[0];
let dir = process.env.ICMPFWD_CLUSTER_DIR ?? "/tmp/icmpfwd-cluster";
let build = true;
for (let i = 1; i < args.length; i++) {
  if (args[i] === "--dir" && args[i + 1] !== undefined) dir = args[++i];
  else if (args[i] === "--no-build") build = false;
  else usage(2);
}
dir = resolve(dir);
const stateFile = join(dir, "state.json");

const log = (msg) => process.stderr.write(`== cluster: ${msg}\n`);

/** Runs a command with inherited output; returns its exit status. */
function run(command, argv, env = process.env, timeoutMs = 900_000) {
  const r = spawnSync(command, argv, { cwd: ROOT, stdio: "inherit", env, timeout: timeoutMs });
  return r.status ?? 1;
}

function readState() {
  try {
    return JSON.parse(readFileSync(stateFile, "utf8"));
  } catch {
    return null;
  }
}

function composeEnv(state) {
  const env = { ...process.env, DOCKER_HOST: state.dockerHost, ICMPFWD_TOKEN: state.token };
  env.COMPOSE_HTTP_TIMEOUT ??= "180";
  delete env.DOCKER_CONTEXT;
  return env;
}

function down() {
  if (!existsSync(dir)) {
    log(`nothing at ${dir}: not running`);
    return 0;
  }
  const state = readState();
  if (state !== null && existsSync(join(dir, "engine/docker.sock"))) {
    log(`docker-compose down (${state.project})`);
    run(
      "docker-compose",
      ["-p", state.project, ...FILES, "down", "-v", "-t", "5"],
      composeEnv(state),
      180_000,
    );
  }
  log("stopping the engine and removing its namespace");
  const code = run(ENGINE, ["stop", join(dir, "engine")], process.env, 300_000);
  rmSync(dir, { recursive: true, force: true });
  return code;
}

function up() {
  if (process.getuid?.() !== 0) {
    log("run as root (a Docker engine in a private network namespace)");
    return 1;
  }
  if (existsSync(dir)) {
    log(`${dir} exists: already up? (npm run cluster -- down first)`);
    return 1;
  }
  if (build && run("npm", ["run", "build", "--silent"]) !== 0) return 1;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const project = process.env.ICMPFWD_CLUSTER_PROJECT ?? "icmpfwd";
  const token = randomBytes(24).toString("hex");
  writeFileSync(join(dir, "token"), `${token}\n`, { mode: 0o600 });

  log("starting a private Docker engine");
  const r = spawnSync(ENGINE, ["start", join(dir, "engine")], {
    cwd: ROOT,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    timeout: 180_000,
  });
  const dockerHost = /^DOCKER_HOST=(\S+)$/m.exec(r.stdout ?? "")?.[1];
  if (r.status !== 0 || dockerHost === undefined) {
    log("the engine did not start");
    down();
    return 1;
  }
  const netns = readFileSync(join(dir, "engine/netns"), "utf8").trim();
  const state = { project, dockerHost, netns, token };
  writeFileSync(stateFile, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  const env = composeEnv(state);

  log("building the offline images");
  if (run(IMAGES, [], env) !== 0) {
    log("the images did not build; tearing down");
    down();
    return 1;
  }
  log("docker-compose up");
  if (
    run("docker-compose", ["-p", project, ...FILES, "up", "-d", "--no-build"], env, 600_000) !== 0
  ) {
    log("docker-compose up failed; tearing down");
    down();
    return 1;
  }
  const compose = `DOCKER_HOST=${dockerHost} docker-compose -p ${project} ${FILES.join(" ")}`;
  process.stdout.write(
    [
      `cluster up: engine in network namespace ${netns}, state in ${dir}`,
      `  export DOCKER_HOST=${dockerHost}`,
      `  ${compose} ps`,
      `  ${compose} exec icmpfwd-1 icmpfwd sessions`,
      "a policy on the host (gRPC published on the namespace's 127.0.0.1:50051 and :50052):",
      `  nsenter --net=/var/run/netns/${netns} node clients/ts/dist/cli.js \\`,
      `    reply-all --target 127.0.0.1:50051,127.0.0.1:50052 --token "$(cat ${dir}/token)"`,
      `Prometheus: 127.0.0.1:9090 inside ${netns} (alerts: /api/v1/alerts)`,
      "down: npm run cluster -- down",
      "",
    ].join("\n"),
  );
  return 0;
}

function status() {
  const state = readState();
  if (state === null) {
    process.stdout.write("not running\n");
    return 0;
  }
  return run("docker-compose", ["-p", state.project, ...FILES, "ps"], composeEnv(state), 60_000);
}

switch (cmd) {
  case "up":
    process.exit(up());
    break;
  case "down":
    process.exit(down());
    break;
  case "status":
    process.exit(status());
    break;
  default:
    usage(2);
}
