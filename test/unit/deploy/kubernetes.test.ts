/**
 * deploy/kubernetes/: every object validated against Kubernetes' own OpenAPI schemas (the
 * kubernetes-models package, Kubernetes 1.27: types, required fields, enums) and, because those
 * schemas accept unknown fields, type-checked as object literals of the same models' TypeScript
 * types (an unknown or misspelt field anywhere is an excess-property error). Then what the
 * manifests must say: the DaemonSet's TUN access, gRPC probes, token Secret and Prometheus
 * annotations; the headless Service; the policy clients targeting dns:/// that Service.
 * No cluster runs here (docs/kubernetes.md says what was validated).
 */
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Model } from "@kubernetes-models/base";
import { DaemonSet, Deployment } from "kubernetes-models/apps/v1";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { Namespace, Service } from "kubernetes-models/v1";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const DIR = join(ROOT, "deploy/kubernetes");

type Manifest = { apiVersion: string; kind: string; metadata: { name: string } } & Record<
  string,
  unknown
>;
type ModelClass = new (data: never) => Model<unknown>;

/** The kinds the manifests use: model class and the module and interface of its type. */
const KINDS: Record<string, { model: ModelClass; module: string; type: string }> = {
  "v1/Namespace": {
    model: Namespace,
    module: "kubernetes-models/v1/Namespace",
    type: "INamespace",
  },
  "v1/Service": { model: Service, module: "kubernetes-models/v1/Service", type: "IService" },
  "apps/v1/DaemonSet": {
    model: DaemonSet,
    module: "kubernetes-models/apps/v1/DaemonSet",
    type: "IDaemonSet",
  },
  "apps/v1/Deployment": {
    model: Deployment,
    module: "kubernetes-models/apps/v1/Deployment",
    type: "IDeployment",
  },
  "networking.k8s.io/v1/NetworkPolicy": {
    model: NetworkPolicy,
    module: "kubernetes-models/networking.k8s.io/v1/NetworkPolicy",
    type: "INetworkPolicy",
  },
};

const files = readdirSync(DIR)
  .filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml")
  .sort();
const manifests: Manifest[] = files.flatMap((f) =>
  parseAllDocuments(readFileSync(join(DIR, f), "utf8")).map((d) => d.toJS() as Manifest),
);
const byKind = (kind: string, name: string): Manifest => {
  const m = manifests.find((x) => x.kind === kind && x.metadata.name === name);
  if (m === undefined) throw new Error(`no ${kind} ${name}`);
  return m;
};

/** Validates with the model's schema; returns the error message, or "" when valid. */
function schemaErrors(m: Manifest): string {
  const k = KINDS[`${m.apiVersion}/${m.kind}`];
  if (k === undefined) return `no model for ${m.apiVersion} ${m.kind}`;
  try {
    new k.model(m as never).validate();
    return "";
  } catch (e) {
    return (e as Error).message;
  }
}

/** Type-checks the manifests as literals of their models' types; returns tsc's messages. */
function typeErrors(ms: readonly Manifest[]): string[] {
  const dir = mkdtempSync(join(tmpdir(), "icmpfwd-k8s-types-"));
  try {
    symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
    const lines = ms.map((m, i) => {
      const k = KINDS[`${m.apiVersion}/${m.kind}`];
      return `import type { ${k.type} as T${i} } from "${k.module}";\nexport const m${i}: T${i} = ${JSON.stringify(m)};`;
    });
    const file = join(dir, "manifests.ts");
    writeFileSync(file, `${lines.join("\n")}\n`);
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      types: [],
    });
    return ts
      .getPreEmitDiagnostics(program)
      .map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  ports?: { name: string; containerPort: number }[];
  env?: {
    name: string;
    value?: string;
    valueFrom?: { secretKeyRef?: { name: string; key: string } };
  }[];
  securityContext?: { capabilities?: { add?: string[]; drop?: string[] } };
  volumeMounts?: { name: string; mountPath: string }[];
  startupProbe?: unknown;
  readinessProbe?: unknown;
  livenessProbe?: unknown;
}
interface PodTemplate {
  metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
  spec: {
    containers: Container[];
    volumes?: { name: string; hostPath?: { path: string; type: string } }[];
  };
}
const template = (m: Manifest): PodTemplate => (m.spec as { template: PodTemplate }).template;
const tokenRef = (c: Container) => c.env?.find((e) => e.name === "ICMPFWD_TOKEN")?.valueFrom;

describe("Kubernetes manifests (deploy/kubernetes)", () => {
  it("hold a Namespace, the DaemonSet, the headless Service, a NetworkPolicy and two client Deployments", () => {
    expect(files).toEqual([
      "daemonset.yaml",
      "namespace.yaml",
      "networkpolicy.yaml",
      "policy-clients.yaml",
      "service.yaml",
    ]);
    expect(manifests.map((m) => `${m.kind}/${m.metadata.name}`).sort()).toEqual([
      "DaemonSet/icmpfwd",
      "Deployment/policy-py",
      "Deployment/policy-ts",
      "Namespace/icmpfwd",
      "NetworkPolicy/icmpfwd",
      "Service/icmpfwd",
    ]);
    const kustomization = parseYaml(readFileSync(join(DIR, "kustomization.yaml"), "utf8")) as {
      resources: string[];
    };
    expect([...kustomization.resources].sort()).toEqual(files);
    for (const m of manifests)
      if (m.kind !== "Namespace")
        expect((m.metadata as { namespace?: string }).namespace, m.kind).toBe("icmpfwd");
  });

  it("every object is valid against Kubernetes' OpenAPI schema (kubernetes-models)", () => {
    expect(
      Object.fromEntries(manifests.map((m) => [`${m.kind}/${m.metadata.name}`, schemaErrors(m)])),
    ).toEqual(Object.fromEntries(manifests.map((m) => [`${m.kind}/${m.metadata.name}`, ""])));
  });

  it("the schema check catches a wrong type and the type check an unknown field (positive controls)", () => {
    const ds = structuredClone(byKind("DaemonSet", "icmpfwd"));
    const c = template(ds).spec.containers[0] as unknown as Record<string, unknown>;
    c.livenessProbe = { grpc: { port: "grpc" } };
    expect(schemaErrors(ds)).toMatch(/livenessProbe\/grpc\/port must be integer/);
    delete c.livenessProbe;
    c.livenesProbe = { grpc: { port: 50051 } };
    expect(schemaErrors(ds)).toBe("");
    expect(typeErrors([ds])).toEqual([
      "Object literal may only specify known properties, and '\"livenesProbe\"' does not exist in type 'IContainer'.",
    ]);
  }, 60_000);

  it("every object type-checks as its model's TypeScript type: no unknown or misspelt field", () => {
    expect(typeErrors(manifests)).toEqual([]);
  }, 60_000);

  it("the DaemonSet: NET_ADMIN only, /dev/net/tun from the node, gRPC probes, token from the Secret, metrics annotated", () => {
    const t = template(byKind("DaemonSet", "icmpfwd"));
    const c = t.spec.containers[0];
    expect(c.args).toEqual(["serve"]);
    expect(c.securityContext?.capabilities).toEqual({ drop: ["ALL"], add: ["NET_ADMIN"] });
    expect(t.spec.volumes).toEqual([
      { name: "dev-net-tun", hostPath: { path: "/dev/net/tun", type: "CharDevice" } },
    ]);
    expect(c.volumeMounts).toEqual([{ name: "dev-net-tun", mountPath: "/dev/net/tun" }]);
    for (const p of [c.startupProbe, c.readinessProbe, c.livenessProbe])
      expect(p).toMatchObject({ grpc: { port: 50051 } });
    expect(c.ports?.map((p) => `${p.name}:${p.containerPort}`)).toEqual([
      "grpc:50051",
      "metrics:9464",
    ]);
    expect(tokenRef(c)).toEqual({ secretKeyRef: { name: "icmpfwd-token", key: "token" } });
    const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
    expect(env.ICMPFWD_LISTEN).toBe("0.0.0.0:50051");
    expect(env.ICMPFWD_METRICS_LISTEN).toBe("0.0.0.0:9464");
    expect(env.ICMPFWD_ALLOW_UNAUTHENTICATED).toBeUndefined();
    expect(t.metadata.annotations).toEqual({
      "prometheus.io/scrape": "true",
      "prometheus.io/port": "9464",
      "prometheus.io/path": "/metrics",
    });
  });

  it("the headless Service selects the DaemonSet's pods and names its ports", () => {
    const s = byKind("Service", "icmpfwd").spec as {
      clusterIP: string;
      selector: Record<string, string>;
      ports: { name: string; port: number; targetPort: string }[];
    };
    expect(s.clusterIP).toBe("None");
    const labels = template(byKind("DaemonSet", "icmpfwd")).metadata.labels;
    for (const [k, v] of Object.entries(s.selector)) expect(labels[k], k).toBe(v);
    expect(s.ports.map((p) => `${p.name} ${p.port}->${p.targetPort}`)).toEqual([
      "grpc 50051->grpc",
      "metrics 9464->metrics",
    ]);
  });

  it("the policy clients target dns:/// the Service, authenticate with the Secret, and may reach gRPC", () => {
    const target = "dns:///icmpfwd.icmpfwd.svc.cluster.local:50051";
    const policy = byKind("NetworkPolicy", "icmpfwd").spec as {
      ingress: {
        from: { podSelector?: { matchLabels: Record<string, string> } }[];
        ports: { port: number }[];
      }[];
    };
    const grpcFrom = policy.ingress.find((r) => r.ports.some((p) => p.port === 50051))?.from[0];
    for (const name of ["policy-ts", "policy-py"]) {
      const t = template(byKind("Deployment", name));
      const c = t.spec.containers[0];
      const args = c.args ?? [];
      expect(args[args.indexOf("--target") + 1], name).toBe(target);
      expect(args[args.indexOf("--name") + 1], name).toBe(name);
      expect(tokenRef(c), name).toEqual({ secretKeyRef: { name: "icmpfwd-token", key: "token" } });
      for (const [k, v] of Object.entries(grpcFrom?.podSelector?.matchLabels ?? { none: "" }))
        expect(t.metadata.labels[k], `${name} ${k}`).toBe(v);
    }
    expect(template(byKind("Deployment", "policy-ts")).spec.containers[0].command).toEqual([
      "icmpfwd-policy",
    ]);
  });
});
