/**
 * The local cluster's compose files, validated by `docker-compose config` (Debian's 1.29; the
 * same files are written for `docker compose` v2) and read back as data: services, the
 * service's TUN capabilities, healthchecks, start order, networks inside 198.19.0.0/16, and the
 * offline override. The cluster itself runs in test/cluster/local-cluster.test.ts.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const inCI = process.env.CI === "true" || process.env.CI === "1";
const haveCompose =
  spawnSync("sh", ["-c", "command -v docker-compose && python3 -c 'import yaml'"], {
    stdio: "ignore",
  }).status === 0;

interface Service {
  image?: string;
  build?: { context: string; target?: string };
  command?: string[];
  entrypoint?: string[];
  cap_add?: string[];
  devices?: string[];
  sysctls?: Record<string, string>;
  environment?: Record<string, string>;
  healthcheck?: { test?: string[]; disable?: boolean };
  depends_on?: Record<string, { condition: string }>;
  network_mode?: string;
  ports?: unknown[];
  profiles?: string[];
  volumes?: unknown[];
}
interface Config {
  services: Record<string, Service>;
  networks: Record<string, { ipam?: { config?: { subnet: string }[] } }>;
}

/** `docker-compose config` of these files, as data (its YAML read by python3-yaml). */
function config(files: string[], env: Record<string, string> = {}): Config {
  const yaml = execFileSync("docker-compose", [...files.flatMap((f) => ["-f", f]), "config"], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    encoding: "utf8",
  });
  const json = execFileSync(
    "python3",
    ["-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
    { input: yaml, encoding: "utf8" },
  );
  return JSON.parse(json) as Config;
}

function inside198_19(cidr: string): boolean {
  const [addr, len] = cidr.split("/");
  const o = addr.split(".").map(Number);
  return o[0] === 198 && o[1] === 19 && Number(len) >= 16;
}

if (!haveCompose && inCI)
  throw new Error("compose config: docker-compose (and python3-yaml) missing");

describe.skipIf(!haveCompose)("docker-compose.yml (docker-compose config)", () => {
  const base = config(["docker-compose.yml"]);
  const offline = config(["docker-compose.yml", "deploy/compose.offline.yml"], {
    PINGER_ROUNDS: "1",
  });

  it("has the service, both policy clients, the pinger, Prometheus and Jaeger", () => {
    expect(Object.keys(base.services).sort()).toEqual([
      "icmpfwd",
      "jaeger",
      "pinger",
      "policy-py",
      "policy-ts",
      "prometheus",
    ]);
    expect(base.services.jaeger.image).toMatch(/^jaegertracing\/all-in-one:/);
    expect(base.services.jaeger.ports).toHaveLength(1);
    expect(base.services.prometheus.image).toMatch(/^prom\/prometheus:/);
  });

  it("runs icmpfwd with NET_ADMIN, /dev/net/tun, IPv6 on and `icmpfwd health` as healthcheck", () => {
    const s = base.services.icmpfwd;
    expect(s.build).toMatchObject({ target: "runtime" });
    expect(s.cap_add).toEqual(["NET_ADMIN"]);
    expect(s.devices).toEqual(["/dev/net/tun:/dev/net/tun"]);
    expect(s.sysctls?.["net.ipv6.conf.all.disable_ipv6"]).toBe("0");
    expect(s.healthcheck?.test).toEqual(["CMD", "icmpfwd", "health"]);
    expect(s.environment?.ICMPFWD_LISTEN).toBe("0.0.0.0:50051");
    // Explicit: a non-loopback listener without credentials refuses to start otherwise.
    expect(s.environment?.ICMPFWD_ALLOW_UNAUTHENTICATED).toBe("true");
    expect(s.environment?.ICMPFWD_METRICS_LISTEN).toBe("0.0.0.0:9464");
    expect(s.environment?.OTEL_EXPORTER_OTLP_ENDPOINT).toBe("http://jaeger:4318");
  });

  it("starts the clients, the pinger and Prometheus only once icmpfwd is healthy", () => {
    for (const name of ["policy-ts", "policy-py", "pinger", "prometheus"]) {
      expect(base.services[name].depends_on?.icmpfwd).toEqual({ condition: "service_healthy" });
    }
  });

  it("gives each policy client one family, so the pinger's outcome is exact", () => {
    expect(base.services["policy-ts"].entrypoint).toEqual(["icmpfwd-policy"]);
    expect(base.services["policy-ts"].command).toEqual([
      "even-reply",
      "--target",
      "icmpfwd:50051",
      "--family",
      "ipv4",
      "--name",
      "policy-ts",
    ]);
    expect(base.services["policy-py"].build).toMatchObject({ target: "runtime" });
    expect(base.services["policy-py"].command).toEqual([
      "reply-all",
      "--target",
      "icmpfwd:50051",
      "--family",
      "ipv6",
      "--name",
      "policy-py",
    ]);
  });

  it("pings from inside the service's network namespace", () => {
    expect(base.services.pinger.network_mode).toBe("service:icmpfwd");
    expect(base.services.pinger.environment?.PINGER_ROUNDS).toBe("0");
    expect(offline.services.pinger.environment?.PINGER_ROUNDS).toBe("1");
  });

  it("keeps every compose network inside 198.19.0.0/16", () => {
    for (const c of [base, offline]) {
      const nets = Object.values(c.networks);
      expect(nets.length).toBeGreaterThan(0);
      for (const n of nets) {
        const subnets = n.ipam?.config?.map((x) => x.subnet) ?? [];
        expect(subnets.length).toBeGreaterThan(0);
        for (const s of subnets) expect(inside198_19(s), s).toBe(true);
      }
    }
  });

  it("offline: local images, Debian's Prometheus, no Jaeger, traces to the OTLP sink", () => {
    const s = offline.services;
    expect(s.icmpfwd.image).toBe("icmpfwd/icmpfwd:local");
    expect(s["policy-ts"].image).toBe("icmpfwd/icmpfwd:local");
    expect(s.pinger.image).toBe("icmpfwd/icmpfwd:local");
    expect(s["policy-py"].image).toBe("icmpfwd/policy-py:local");
    expect(s.prometheus.image).toBe("icmpfwd-local/base:bookworm");
    expect(s.prometheus.entrypoint).toEqual(["/usr/bin/prometheus"]);
    expect(s.jaeger.profiles).toEqual(["jaeger"]);
    expect(s.icmpfwd.environment?.OTEL_EXPORTER_OTLP_ENDPOINT).toBe("http://otlp-sink:4318");
    expect(s["otlp-sink"].entrypoint).toEqual(["node", "/app/otlp-sink.mjs", "4318", "0.0.0.0"]);
  });
});

describe("Dockerfiles", () => {
  const LOCAL = `$${"{BASE}"} local`; // the offline stage: FROM ${BASE} AS local
  const stages = (file: string): string[] =>
    [...readFileSync(`${ROOT}/${file}`, "utf8").matchAll(/^FROM\s+(\S+)\s+AS\s+(\S+)/gm)].map(
      (m) => `${m[1]} ${m[2]}`,
    );

  it("build online from node:20-bookworm-slim / debian:bookworm-slim, offline from the local base (last)", () => {
    expect(stages("Dockerfile")).toEqual([
      "node:20-bookworm-slim build",
      "node:20-bookworm-slim runtime",
      LOCAL,
    ]);
    expect(stages("clients/python/Dockerfile")).toEqual(["debian:bookworm-slim runtime", LOCAL]);
  });

  it("run nothing in the offline stage (its build has no network)", () => {
    for (const file of ["Dockerfile", "clients/python/Dockerfile"]) {
      const text = readFileSync(`${ROOT}/${file}`, "utf8");
      const local = text.slice(text.indexOf("AS local"));
      expect(local).not.toMatch(/^RUN\b/m);
      expect(text).toMatch(/HEALTHCHECK|ENTRYPOINT/);
    }
    expect(readFileSync(`${ROOT}/Dockerfile`, "utf8")).toMatch(
      /HEALTHCHECK .* CMD \["icmpfwd", "health"\]/,
    );
  });
});
