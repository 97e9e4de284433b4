/**
 * The monitoring files, checked by Prometheus' own tool (promtool, Debian package `prometheus`):
 * the cluster's Prometheus config with its rule file, the alerting rules, and each alert's unit
 * test (deploy/prometheus/alerts.test.yml, one test group per alert, run one at a time here).
 * The dashboard's queries are checked by promtool too, as recording rules. That every metric
 * they name exists on a live service is test/e2e/metrics-names.test.ts.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { dashboardQueries, loadDashboard } from "./monitoring-queries.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const PROM = join(ROOT, "deploy/prometheus");
const inCI = process.env.CI === "true" || process.env.CI === "1";
const havePromtool =
  spawnSync("sh", ["-c", "command -v promtool"], { stdio: "ignore" }).status === 0;
if (!havePromtool && inCI) throw new Error("promtool is missing (apt-get install prometheus)");

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
}
interface RuleFile {
  groups: { name: string; rules: Rule[] }[];
}
interface RuleTests {
  rule_files: string[];
  evaluation_interval: string;
  tests: { name: string; alert_rule_test: { alertname: string }[] }[];
}

const ALERTS = [
  "IcmpfwdNoDecisionClient",
  "IcmpfwdDecisionsTimingOut",
  "IcmpfwdFallthroughOnOverload",
  "IcmpfwdNetstackDropsRising",
  "IcmpfwdEventLoopLag",
];

function promtool(args: readonly string[], cwd = PROM) {
  const r = spawnSync("promtool", args, { cwd, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

const rules = parse(readFileSync(join(PROM, "alerts.yml"), "utf8")) as RuleFile;
const ruleTests = parse(readFileSync(join(PROM, "alerts.test.yml"), "utf8")) as RuleTests;
const work = mkdtempSync(join(tmpdir(), "icmpfwd-promtool-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.skipIf(!havePromtool)(
  `Prometheus config and alerting rules (promtool)${havePromtool ? "" : " (skipped: needs promtool: apt-get install prometheus)"}`,
  () => {
    it("promtool check config: the cluster's config is valid and loads alerts.yml", () => {
      const r = promtool(["check", "config", "prometheus.yml"]);
      expect(r.out).toContain("SUCCESS: 1 rule files found");
      expect(r.out).toContain("SUCCESS: 5 rules found");
      expect(r.code, r.out).toBe(0);
      const cfg = parse(readFileSync(join(PROM, "prometheus.yml"), "utf8")) as {
        rule_files: string[];
        scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
      };
      expect(cfg.rule_files).toEqual(["alerts.yml"]);
      expect(cfg.scrape_configs).toEqual([
        {
          job_name: "icmpfwd",
          static_configs: [{ targets: ["icmpfwd-1:9464", "icmpfwd-2:9464"] }],
        },
      ]);
    });

    it("promtool check rules: alerts.yml holds exactly the five alerts", () => {
      const r = promtool(["check", "rules", "alerts.yml"]);
      expect(r.out).toContain("SUCCESS: 5 rules found");
      expect(r.code, r.out).toBe(0);
      const names = rules.groups.flatMap((g) => g.rules.map((x) => x.alert));
      expect(names).toEqual(ALERTS);
      // Every alert is per replica (by instance) and has a severity.
      for (const x of rules.groups[0].rules) {
        expect(x.expr, x.alert).toMatch(/by \(instance\)/);
        expect(["critical", "warning"], x.alert).toContain(x.labels?.severity);
      }
      // alerts.test.yml has one test group per alert, named after it.
      expect(ruleTests.tests.map((t) => t.name)).toEqual(ALERTS);
    });

    // One test per alert: its promtool test group alone (fires for the bad replica with the exact
    // labels and annotations, stays silent for the healthy one and before `for` has passed).
    for (const alert of ALERTS) {
      it(alert, () => {
        const group = ruleTests.tests.find((t) => t.name === alert);
        expect(group?.alert_rule_test.every((t) => t.alertname === alert)).toBe(true);
        const file = join(work, `${alert}.test.yml`);
        writeFileSync(
          file,
          stringify({
            rule_files: [join(PROM, "alerts.yml")],
            evaluation_interval: ruleTests.evaluation_interval,
            tests: [group],
          }),
        );
        const r = promtool(["test", "rules", file], work);
        expect(r.out).toContain("SUCCESS");
        expect(r.code, r.out).toBe(0);
      });
    }

    it("every Grafana panel query is valid PromQL (promtool, as recording rules)", () => {
      const queries = dashboardQueries(loadDashboard());
      expect(queries.length).toBe(22);
      const file = join(work, "dashboard-rules.yml");
      writeFileSync(
        file,
        stringify({
          groups: [
            {
              name: "dashboard",
              rules: queries.map((expr, i) => ({ record: `dashboard:query${i}`, expr })),
            },
          ],
        }),
      );
      const r = promtool(["check", "rules", file], work);
      expect(r.out).toContain(`SUCCESS: ${queries.length} rules found`);
      expect(r.code, r.out).toBe(0);
    });
  },
);
