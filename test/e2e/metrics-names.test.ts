/**
 * Every metric the dashboard (deploy/grafana/icmpfwd.json) and the alerting rules
 * (deploy/prometheus/alerts.yml) select exists on the /metrics of a real `icmpfwd serve`, in a
 * private namespace, with the label names they match on. The PromQL is parsed with Prometheus'
 * own grammar (test/unit/deploy/monitoring-queries.ts). A real client decides one kernel ping
 * first, so the decision histogram has its series.
 */
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeNetns, Netns, type Spawned, waitFor } from "../helpers/netns.js";
import { type ServeProcess, startServe } from "../helpers/serve.js";
import {
  alertExpressions,
  dashboardQueries,
  loadDashboard,
  type Selector,
  selectors,
} from "../unit/deploy/monitoring-queries.js";

const CLIENT_CLI = fileURLToPath(new URL("../../clients/ts/dist/cli.js", import.meta.url));
/** Labels Prometheus adds at scrape time, not the exporter. */
const SCRAPE_LABELS = new Set(["instance", "job"]);

/**
 * Series names and their label names, read from the sample lines of the text exposition: what
 * Prometheus stores (histograms as _bucket, _sum, _count). parse-prometheus-text-format drops
 * a histogram's labels, so the lines are read here (`name{l1="v",l2="v"} value`).
 */
function seriesOf(text: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+$/.exec(line);
    if (m === null) continue;
    const labels = out.get(m[1]) ?? new Set<string>();
    const pair = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"\s*,?/y;
    const body = m[2] ?? "";
    let end = 0;
    for (let p = pair.exec(body); p !== null; p = pair.exec(body)) {
      labels.add(p[1]);
      end = pair.lastIndex;
    }
    if (end !== body.length) throw new Error(`unparsed labels: ${line}`);
    out.set(m[1], labels);
  }
  return out;
}

describeNetns("monitoring: the dashboard's and the alerts' metrics on a live /metrics", () => {
  let ns: Netns;
  let serve: ServeProcess;
  let client: Spawned;
  let series: Map<string, Set<string>>;
  let text = "";

  beforeAll(async () => {
    if (!existsSync(CLIENT_CLI)) throw new Error(`${CLIENT_CLI} is missing: run npm run build`);
    ns = await Netns.create("metricnames");
    serve = await startServe(ns, ["--metrics-listen", "127.0.0.1:9464"]);
    client = ns.spawnNode(CLIENT_CLI, ["reply-all", "--target", "127.0.0.1:50051"]);
    await waitFor(() => serve.stats()["service.sessions"] === 1 || client.child.exitCode !== null, {
      what: "the policy client's session",
      timeoutMs: 15_000,
    });
    if (client.child.exitCode !== null) throw new Error(`client exited: ${client.output()}`);
    const ping = await ns.ping(["-n", "-c", "1", "-W", "2", "198.18.0.2"]);
    expect(ping.received).toBe(1);
    await serve.waitVerdicts(1);
    text = await ns.sh(
      `${process.execPath} -e "fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))"`,
    );
    series = seriesOf(text);
  });

  afterAll(async () => {
    if (client?.child.exitCode === null) client.child.kill("SIGTERM");
    await serve?.stop();
    await ns?.destroy();
  });

  /** The selectors whose metric or matcher labels the live endpoint lacks. */
  const missing = (sel: Selector[]): string[] =>
    sel.flatMap((s) => {
      const labels = series.get(s.metric);
      if (labels === undefined) return [s.metric];
      return s.labels
        .filter((l) => !SCRAPE_LABELS.has(l) && !labels.has(l))
        .map((l) => `${s.metric}{${l}}`);
    });

  it("the positive control: the decision histogram and the runtime metrics are there", () => {
    expect(series.get("icmpfwd_decision_duration_seconds_bucket")).toEqual(
      new Set(["session", "verdict", "le", "otel_scope_name", "otel_scope_version"]),
    );
    expect(series.has("icmpfwd_build_info")).toBe(true);
    expect(series.has("nodejs_eventloop_delay_p99")).toBe(true);
    expect(
      missing([
        { metric: "icmpfwd_no_such_metric", labels: [] },
        { metric: "icmpfwd_requests_total", labels: ["outcome", "cause", "no_such_label"] },
      ]),
    ).toEqual(["icmpfwd_no_such_metric", "icmpfwd_requests_total{no_such_label}"]);
  });

  it("icmpfwd_build_info{version,node} is 1, naming this package's version and this Node", () => {
    const version = (
      JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
        version: string;
      }
    ).version;
    const lines = text.split("\n").filter((l) => l.startsWith("icmpfwd_build_info{"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(
        `^icmpfwd_build_info\\{version="${version}",node="${process.versions.node}",.*\\} 1$`,
      ),
    );
  });

  it("every metric and matcher label of every dashboard query exists", () => {
    const queries = dashboardQueries(loadDashboard());
    expect(queries.length).toBe(22);
    const absent = queries.flatMap((q) => missing(selectors(q)).map((m) => `${m} in ${q}`));
    expect(absent).toEqual([]);
  });

  it("every metric and matcher label of every alerting rule exists", () => {
    const alerts = alertExpressions();
    expect(alerts.length).toBe(5);
    const absent = alerts.flatMap((a) =>
      missing(selectors(a.expr)).map((m) => `${m} in ${a.alert}`),
    );
    expect(absent).toEqual([]);
  });
});
