/**
 * docs/bench.svg from bench-results.json: a horizontal bar chart of replies/s (flood rows) and
 * decisions/s (service rows), with the kernel and bare-responder baselines drawn as dashed lines
 * across the flood rows. Hand-written SVG, no dependency.
 *
 * `tsx test/bench/chart.ts [bench-results.json] [docs/bench.svg]`; run.ts calls it after a run.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

interface ChartRow {
  module: string;
  mechanism: string;
  repliesPerSecond: number;
}

interface Results {
  date?: string;
  quick?: boolean;
  machine?: { cpu?: string; nproc?: number; kernel?: string };
  rows: ChartRow[];
}

const esc = (s: string): string =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

function rate(n: number): string {
  return n >= 1000 ? `${(n / 1000).toFixed(1)}k/s` : `${n.toFixed(0)}/s`;
}

export function renderChart(results: Results): string {
  const flood = results.rows.filter(
    (r) => r.module !== "service" && r.module !== "memory" && r.module !== "footprint",
  );
  const service = results.rows.filter(
    (r) => r.module === "service" && !/, \d+\/s$/.test(r.mechanism),
  );
  const sections: [string, ChartRow[]][] = [
    ["Echo Requests answered under a bounded ping flood (replies/s)", flood],
    ["Decision path alone on loopback (decisions/s)", service],
  ];
  const labelW = 470;
  const barW = 420;
  const rowH = 18;
  const pad = 10;
  const max = Math.max(1, ...results.rows.map((r) => r.repliesPerSecond));
  const x = (v: number): number => labelW + (v / max) * barW;
  const kernel = flood.find((r) => r.module === "kernel")?.repliesPerSecond;
  const bare = flood.find((r) => r.module === "tun-responder")?.repliesPerSecond;
  const parts: string[] = [];
  let y = 56;
  for (const [title, rows] of sections) {
    if (rows.length === 0) continue;
    parts.push(`<text x="${pad}" y="${y}" font-weight="bold">${esc(title)}</text>`);
    y += 8;
    const top = y;
    for (const r of rows) {
      const colour =
        r.module === "kernel"
          ? "#888"
          : r.module === "tun-responder"
            ? "#6a8caf"
            : r.module === "gvisor" || r.module === "nfqueue"
              ? "#c9a04f"
              : r.module === "service" && r.mechanism.startsWith("bare")
                ? "#aaa"
                : "#3c8d5a";
      parts.push(
        `<text x="${labelW - 6}" y="${y + rowH - 5}" text-anchor="end">${esc(r.mechanism.slice(0, 80))}</text>`,
        `<rect x="${labelW}" y="${y + 2}" width="${(x(r.repliesPerSecond) - labelW).toFixed(1)}" height="${rowH - 4}" fill="${colour}"/>`,
        `<text x="${(x(r.repliesPerSecond) + 4).toFixed(1)}" y="${y + rowH - 5}">${rate(r.repliesPerSecond)}</text>`,
      );
      y += rowH;
    }
    if (rows === flood) {
      for (const [v, name] of [
        [kernel, "kernel"],
        [bare, "bare responder"],
      ] as const) {
        if (v === undefined) continue;
        parts.push(
          `<line x1="${x(v).toFixed(1)}" y1="${top}" x2="${x(v).toFixed(1)}" y2="${y}" stroke="#333" stroke-dasharray="4 3"/>`,
          `<text x="${x(v).toFixed(1)}" y="${y + 12}" text-anchor="middle" font-size="10">${name}</text>`,
        );
      }
      y += 14;
    }
    y += 20;
  }
  const m = results.machine;
  const caption = `${results.date ?? ""}${results.quick ? " (--quick smoke run)" : ""}${m ? ` — ${m.nproc ?? "?"} × ${m.cpu ?? "?"}, Linux ${m.kernel ?? "?"}` : ""}`;
  const width = labelW + barW + 90;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="sans-serif" font-size="11">`,
    "<title>icmpfwd benchmark: replies/s and decisions/s per mechanism</title>",
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${pad}" y="18" font-size="14" font-weight="bold">icmpfwd npm run bench</text>`,
    `<text x="${pad}" y="32" font-size="10" fill="#555">${esc(caption)}</text>`,
    ...parts,
    "</svg>",
    "",
  ].join("\n");
}

export function writeChart(jsonPath: string, svgPath: string): void {
  const results = JSON.parse(readFileSync(jsonPath, "utf8")) as Results;
  writeFileSync(svgPath, renderChart(results));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = fileURLToPath(new URL("../../", import.meta.url));
  writeChart(
    process.argv[2] ?? `${root}bench-results.json`,
    process.argv[3] ?? `${root}docs/bench.svg`,
  );
}
