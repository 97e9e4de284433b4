/**
 * The local cluster's compose files, validated by `docker-compose config` (Debian's 1.29; the
 * same files are written for `docker compose` v2) and read back as data: services, the
 * service's TUN capabilities, healthchecks, start order, the two-replica fleet and its one DNS
 * name, networks inside 198.19.0.0/16, and the offline override. The cluster itself runs in
 * test/cluster/local-cluster.test.ts.
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
  networks?: Networks;
}
interface Config {
  services: Record<string, Service>;
  networks: Record<string, { ipam?: { config?: { subnet: string }[] } }>;
}
type Networks = Record<string, { aliases?: string[] } | null>;

const REPLICAS = ["icmpfwd-1", "icmpfwd-2"];

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

  it("has two service replicas, both policy clients, a pinger per replica, Prometheus and Jaeger", () => {
    expect(Object.keys(base.services).sort()).toEqual([
      "icmpfwd-1",
      "icmpfwd-2",
      "jaeger",
      "pinger-1",
      "pinger-2",
      "policy-py",
      "policy-ts",
      "prometheus",
    ]);
    expect(base.services.jaeger.image).toMatch(/^jaegertracing\/all-in-one:/);
    expect(base.services.jaeger.ports).toHaveLength(1);
    expect(base.services.prometheus.image).toMatch(/^prom\/prometheus:/);
  });

  it("runs each replica with NET_ADMIN, /dev/net/tun, IPv6 on and `icmpfwd health` as healthcheck", () => {
    for (const name of REPLICAS) {
      const s = base.services[name];
      expect(s.build).toMatchObject({ target: "runtime" });
      expect(s.cap_add).toEqual(["NET_ADMIN"]);
      expect(s.devices).toEqual(["/dev/net/tun:/dev/net/tun"]);
      expect(s.sysctls?.["net.ipv6.conf.all.disable_ipv6"]).toBe("0");
      expect(s.healthcheck?.test).toEqual(["CMD", "icmpfwd", "health"]);
      expect(s.environment?.ICMPFWD_LISTEN).toBe("0.0.0.0:50051");
      expect(s.environment?.ICMPFWD_METRICS_LISTEN).toBe("0.0.0.0:9464");
      expect(s.environment?.OTEL_EXPORTER_OTLP_ENDPOINT).toBe("http://jaeger:4318");
      expect(s.environment?.OTEL_RESOURCE_ATTRIBUTES).toBe(`service.instance.id=${name}`);
    }
  });

  it("requires a bearer token on every replica (plaintext lab network: --insecure-token)", () => {
    const withToken = config(["docker-compose.yml"], { ICMPFWD_TOKEN: "t0ken" });
    for (const name of REPLICAS) {
      const e = withToken.services[name].environment;
      expect(e?.ICMPFWD_TOKEN).toBe("t0ken");
      expect(e?.ICMPFWD_INSECURE_TOKEN).toBe("true");
      expect(e?.ICMPFWD_ALLOW_UNAUTHENTICATED).toBeUndefined();
    }
    for (const name of ["policy-ts", "policy-py", "pinger-1", "pinger-2"])
      expect(withToken.services[name].environment?.ICMPFWD_TOKEN).toBe("t0ken");
    expect(base.services["icmpfwd-1"].environment?.ICMPFWD_TOKEN).toBe("icmpfwd-lab-token");
  });

  it("gives both replicas the one name `icmpfwd` and publishes their gRPC on loopback", () => {
    for (const name of REPLICAS)
      expect(base.services[name].networks?.default?.aliases).toEqual(["icmpfwd"]);
    // docker-compose 1.29 prints the short syntax.
    expect(base.services["icmpfwd-1"].ports).toEqual(["127.0.0.1:50051:50051/tcp"]);
    expect(base.services["icmpfwd-2"].ports).toEqual(["127.0.0.1:50052:50051/tcp"]);
  });

  it("starts the clients and Prometheus once both replicas are healthy, each pinger once its replica is", () => {
    for (const name of ["policy-ts", "policy-py", "prometheus"])
      for (const r of REPLICAS)
        expect(base.services[name].depends_on?.[r]).toEqual({ condition: "service_healthy" });
    expect(base.services["pinger-1"].depends_on?.["icmpfwd-1"]).toEqual({
      condition: "service_healthy",
    });
    expect(base.services["pinger-2"].depends_on?.["icmpfwd-2"]).toEqual({
      condition: "service_healthy",
    });
  });

  it("gives each policy client one family and the whole fleet (dns:///icmpfwd:50051)", () => {
    expect(base.services["policy-ts"].entrypoint).toEqual(["icmpfwd-policy"]);
    expect(base.services["policy-ts"].command).toEqual([
      "even-reply",
      "--target",
      "dns:///icmpfwd:50051",
      "--family",
      "ipv4",
      "--name",
      "policy-ts",
    ]);
    expect(base.services["policy-py"].build).toMatchObject({ target: "runtime" });
    expect(base.services["policy-py"].command).toEqual([
      "reply-all",
      "--target",
      "dns:///icmpfwd:50051",
      "--family",
      "ipv6",
      "--name",
      "policy-py",
    ]);
  });

  it("loads the alerting rules into Prometheus, which scrapes both replicas", () => {
    expect(base.services.prometheus.volumes).toEqual([
      `${ROOT.replace(/\/$/, "")}/deploy/prometheus:/etc/prometheus:ro`,
    ]);
  });

  it("pings from inside each replica's network namespace", () => {
    for (const [pinger, replica] of [
      ["pinger-1", "icmpfwd-1"],
      ["pinger-2", "icmpfwd-2"],
    ]) {
      expect(base.services[pinger].network_mode).toBe(`service:${replica}`);
      expect(base.services[pinger].environment?.PINGER_ROUNDS).toBe("0");
      expect(offline.services[pinger].environment?.PINGER_ROUNDS).toBe("1");
    }
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
    for (const name of [...REPLICAS, "policy-ts", "pinger-1", "pinger-2"])
      expect(s[name].image, name).toBe("icmpfwd/icmpfwd:local");
    expect(s["policy-py"].image).toBe("icmpfwd/policy-py:local");
    expect(s.prometheus.image).toBe("icmpfwd-local/base:bookworm");
    expect(s.prometheus.entrypoint).toEqual(["/usr/bin/prometheus"]);
    expect(s.jaeger.profiles).toEqual(["jaeger"]);
    for (const name of REPLICAS)
      expect(s[name].environment?.OTEL_EXPORTER_OTLP_ENDPOINT).toBe("http://otlp-sink:4318");
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
