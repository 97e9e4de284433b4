/**
 * clients/go: the checked-in Go code matches the protos (regenerated with Debian's protoc,
 * protoc-gen-go and protoc-gen-go-grpc into a temp dir, compared byte for byte), and `go vet`
 * and `go test` pass in GOPATH mode over Debian's /usr/share/gocode (clients/go/go.sh). A missing
 * tool skips with the reason; under CI=true it fails instead.
 */
import { execFile, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const inCI = process.env.CI === "true" || process.env.CI === "1";
const dir = fileURLToPath(new URL("../../../clients/go", import.meta.url));
const gen = join(dir, "icmpfwdv1");
const GOCODE = "/usr/share/gocode/src";
/** A cold build cache compiles grpc and protobuf first (about half a minute on 2 cores). */
const GO_TIMEOUT_MS = 240_000;

function has(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

function missing(): string | null {
  const tools = ["go", "gofmt", "protoc", "protoc-gen-go", "protoc-gen-go-grpc"].filter(
    (t) => !has(t),
  );
  if (tools.length > 0)
    return `missing ${tools.join(", ")} (golang-go, protobuf-compiler, protoc-gen-go, protoc-gen-go-grpc)`;
  const libs: [string, string][] = [
    ["google.golang.org/grpc", "golang-google-grpc-dev"],
    ["google.golang.org/protobuf", "golang-google-protobuf-dev"],
    // grpc-go 1.33 marshals through github.com/golang/protobuf; only 1.5 handles the APIv2
    // messages protoc-gen-go 1.28 writes (the 1.3 package panics on their oneofs).
    ["github.com/golang/protobuf/proto/wire.go", "golang-github-golang-protobuf-1-5-dev"],
  ];
  const absent = libs.filter(([p]) => !existsSync(join(GOCODE, p))).map(([, pkg]) => pkg);
  if (absent.length > 0) return `${GOCODE} lacks ${absent.join(", ")}`;
  return null;
}

/**
 * Runs the go tool through clients/go/go.sh (GOPATH mode, import path github.com/icmpfwd/client-go).
 * Asynchronously: a cold build blocks for tens of seconds, and a blocked worker loses its RPC to
 * vitest.
 */
function goTool(args: string[]): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    execFile(
      join(dir, "go.sh"),
      args,
      { timeout: GO_TIMEOUT_MS - 5_000, maxBuffer: 16 << 20, env: { ...process.env, GOFLAGS: "" } },
      (err, stdout, stderr) => {
        const status = err === null ? 0 : typeof err.code === "number" ? err.code : null;
        resolve({ status, out: `${stdout}${stderr}` });
      },
    );
  });
}

const why = missing();
if (why !== null && inCI) throw new Error(`the Go client tests need: ${why}`);
const d = why === null ? describe : describe.skip;

d(`the Go client (clients/go)${why === null ? "" : ` (skipped: ${why})`}`, () => {
  it("has icmpfwdv1 generated from the current protos (run clients/go/generate.sh)", () => {
    const out = mkdtempSync(join(tmpdir(), "icmpfwd-gogen-"));
    const r = spawnSync(join(dir, "generate.sh"), [out], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const names = readdirSync(gen).filter((n) => n.endsWith(".go"));
    expect(names.sort()).toEqual(["forwarder.pb.go", "forwarder_grpc.pb.go"]);
    expect(readdirSync(out).sort()).toEqual(names);
    for (const n of names) {
      expect(readFileSync(join(out, n)).equals(readFileSync(join(gen, n))), `${n} is stale`).toBe(
        true,
      );
    }
  });

  it(
    "is gofmt-clean and passes go vet",
    async () => {
      const fmt = spawnSync("gofmt", ["-l", dir], { encoding: "utf8" });
      expect(fmt.status, fmt.stderr).toBe(0);
      expect(fmt.stdout, "gofmt -l lists unformatted files").toBe("");
      const r = await goTool(["vet", "./..."]);
      expect(r.status, r.out).toBe(0);
    },
    GO_TIMEOUT_MS,
  );

  it(
    "passes its Go unit tests (batching, drain, reconnect, token, TLS, backoff bounds, panics fall through)",
    async () => {
      const r = await goTool(["test", "-count=1", "./..."]);
      expect(r.status, r.out).toBe(0);
      expect(r.out).toMatch(/^ok\s+github\.com\/icmpfwd\/client-go\s/m);
      expect(r.out).toMatch(/^ok\s+github\.com\/icmpfwd\/client-go\/cmd\/icmpfwd-policy-go\s/m);
    },
    GO_TIMEOUT_MS,
  );
});
