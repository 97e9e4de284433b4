#!/usr/bin/env node
// The Debian packages the tests use, in one place: each with why and which tests need it.
// `npm test` runs this first. As root where apt-get exists, it installs what is missing (saying
// what and why) and loads the tun module; otherwise it prints one line: what will skip, and the
// command that would run it. `--list` prints the table; `--dry-run` shows what it would do.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** @type {readonly { pkg: string; why: string; tests: string }[]} */
export const PREREQUISITES = [
  { pkg: "build-essential", why: "compiles the TUN addon (native/)", tests: "npm install" },
  { pkg: "python3", why: "node-gyp; the Python policy client", tests: "npm install, clients" },
  { pkg: "iproute2", why: "ip netns, addresses, routes, nstat", tests: "test/e2e/*, cluster" },
  { pkg: "iputils-ping", why: "the kernel's ping", tests: "test/e2e/*" },
  { pkg: "procps", why: "ps, pkill, sysctl", tests: "test/e2e/*" },
  { pkg: "kmod", why: "modprobe tun", tests: "test/e2e/*" },
  { pkg: "util-linux", why: "setpriv, nsenter, script (a pty)", tests: "privileges, cli, cluster" },
  { pkg: "openssl", why: "test certificates", tests: "security, cli, clients" },
  { pkg: "tcpdump", why: "packet captures", tests: "forwarder, fragments, hostile-packets" },
  { pkg: "tshark", why: "decodes captures", tests: "forwarder, fragments, link/sniffer" },
  { pkg: "python3-scapy", why: "crafted packets", tests: "ip-fidelity, hostile-packets" },
  { pkg: "python3-grpcio", why: "the Python policy client", tests: "client-python, cluster" },
  { pkg: "python3-protobuf", why: "the Python policy client", tests: "client-python, cluster" },
  { pkg: "python3-venv", why: "the Python client's package build", tests: "clients/python" },
  { pkg: "python3-yaml", why: "reads docker-compose config", tests: "repo/compose-config" },
  { pkg: "protobuf-compiler", why: "protoc for the Python and Go stubs", tests: "clients" },
  { pkg: "protobuf-compiler-grpc", why: "grpc_python_plugin", tests: "client-python" },
  { pkg: "tmux", why: "a terminal for icmpfwd top", tests: "top" },
  {
    pkg: "golang-go",
    why: "the Go policy client and gVisor peer",
    tests: "client-go, differential",
  },
  { pkg: "golang-gvisor-gvisor-dev", why: "the gVisor reference netstack", tests: "differential" },
  { pkg: "golang-google-grpc-dev", why: "the Go policy client (offline)", tests: "client-go" },
  { pkg: "golang-google-protobuf-dev", why: "the Go policy client (offline)", tests: "client-go" },
  {
    pkg: "golang-github-golang-protobuf-1-5-dev",
    why: "the Go policy client (offline)",
    tests: "client-go",
  },
  {
    pkg: "golang-golang-x-net-dev",
    why: "ICMP sockets for the Go relay policy",
    tests: "relay-traceroute",
  },
  { pkg: "traceroute", why: "traceroute -I through the tunnel", tests: "relay-traceroute" },
  { pkg: "mtr-tiny", why: "mtr's report through the tunnel", tests: "relay-traceroute" },
  { pkg: "protoc-gen-go", why: "Go stubs", tests: "client-go" },
  { pkg: "protoc-gen-go-grpc", why: "Go gRPC stubs", tests: "client-go" },
  { pkg: "prometheus", why: "promtool checks the alert rules", tests: "alert rules" },
  { pkg: "docker.io", why: "the local cluster's engine", tests: "cluster" },
  { pkg: "docker-compose", why: "the local cluster", tests: "cluster, repo/compose-config" },
  { pkg: "debootstrap", why: "the cluster's images from Debian", tests: "cluster" },
];

const have = (cmd) =>
  spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;

/** The packages of `pkgs` dpkg does not have installed (all of them without dpkg). */
export function missingPackages(pkgs = PREREQUISITES.map((p) => p.pkg)) {
  if (!have("dpkg-query")) return [...pkgs];
  // dpkg-query's own ${field} syntax, not a template.
  const format = ["-f=$", "{Package} $", "{db:Status-Abbrev}\\n"].join("");
  const r = spawnSync("dpkg-query", ["-W", format, ...pkgs], {
    encoding: "utf8",
  });
  const installed = new Set(
    r.stdout
      .split("\n")
      .filter((l) => / ii\s*$/.test(l))
      .map((l) => l.split(" ")[0]),
  );
  return pkgs.filter((p) => !installed.has(p));
}

/** Installs `pkgs` with apt-get (an update only when the first try fails); whether it worked. */
export function aptInstall(pkgs, { quiet = true } = {}) {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const args = ["install", "-y", "-qq", "--no-install-recommends", ...pkgs];
  const stdio = quiet ? "ignore" : "inherit";
  if (spawnSync("apt-get", args, { stdio, env, timeout: 1_200_000 }).status === 0) return true;
  spawnSync("apt-get", ["update", "-qq"], { stdio, env, timeout: 600_000 });
  return spawnSync("apt-get", args, { stdio, env, timeout: 1_200_000 }).status === 0;
}

function main(argv) {
  const dryRun = argv.includes("--dry-run");
  if (argv.includes("--list")) {
    for (const p of PREREQUISITES) console.log(`${p.pkg.padEnd(38)} ${p.why} — ${p.tests}`);
    return 0;
  }
  const missing = missingPackages();
  const root = process.getuid?.() === 0;
  const apt = have("apt-get");
  if (!root || !apt) {
    const what = [
      ...(root
        ? []
        : ["the e2e and cluster tests (they need root for TUN devices and namespaces)"]),
      ...(missing.length > 0 ? [`tests needing ${missing.join(", ")}`] : []),
    ];
    if (what.length > 0) {
      const how = !apt
        ? `install the Debian packages ${missing.join(" ")} (see scripts/prerequisites.mjs)${root ? "" : " and run as root"}`
        : "`sudo npm test` installs what is missing and runs everything";
      console.log(`npm test: skipping ${what.join(" and ")}; ${how}`);
    }
    return 0;
  }
  if (missing.length > 0) {
    console.log(`npm test: installing ${missing.length} Debian package(s) the tests need:`);
    for (const name of missing) {
      const p = PREREQUISITES.find((x) => x.pkg === name);
      console.log(`  ${name} — ${p?.why} (${p?.tests})`);
    }
    if (dryRun) console.log(`  (dry run: apt-get install -y ${missing.join(" ")})`);
    else if (!aptInstall(missing, { quiet: false }))
      console.log("npm test: apt-get failed; the tests that need those packages will say so");
  }
  // The TUN tests need /dev/net/tun; load the module where it is not built in.
  if (!existsSync("/dev/net/tun") && !dryRun) spawnSync("modprobe", ["tun"], { stdio: "ignore" });
  return 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exit(main(process.argv.slice(2)));
