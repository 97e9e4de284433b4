/**
 * The Go client as a package, the way clients/README.md says for an offline machine: from a temp
 * dir outside the repository, the client copied to its import path in a GOPATH of the user's own
 * and the README's ten-line policy (clients/go/examples/even, checked word for word against the
 * README) built in GOPATH mode over Debian's /usr/share/gocode — inside a private namespace, which
 * has no network, so nothing can be fetched — then run against a real `icmpfwd serve` there:
 * `ping -c 20` (IPv4 and IPv6) gets exactly the even sequences answered.
 */
import { cpSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { expectEvenPingsDecided } from "../helpers/even-pings.js";
import { describeNetns, exec, inCI, Netns, type Spawned, tempDir } from "../helpers/netns.js";
import { type ServeProcess, startServe } from "../helpers/serve.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const EXAMPLE = join(ROOT, "clients/go/examples/even/main.go");
/** A cold build cache compiles grpc and protobuf first. */
const BUILD_TIMEOUT_MS = 240_000;

/** The README's Go example (the go block of its "## Go" section). */
function readmeGoBlock(): string {
  const readme = readFileSync(join(ROOT, "clients/README.md"), "utf8");
  const at = readme.indexOf("\n## Go");
  const m = /```go\n([\s\S]*?)```/.exec(readme.slice(at));
  if (at < 0 || m?.[1] === undefined) throw new Error("clients/README.md has no Go example");
  return m[1];
}

/** The lines between the example markers of examples/even, one tab of indentation removed. */
function exampleBody(): string {
  const src = readFileSync(EXAMPLE, "utf8");
  const m = /\/\/ example:begin\n([\s\S]*?)\t\/\/ example:end/.exec(src);
  if (m?.[1] === undefined) throw new Error(`${EXAMPLE} has no example markers`);
  return m[1].replace(/^\t/gm, "");
}

async function goReady(): Promise<string | null> {
  if ((await exec("sh", ["-c", "command -v go"])).code !== 0)
    return "go is not installed (golang-go)";
  if (!existsSync("/usr/share/gocode/src/google.golang.org/grpc"))
    return "golang-google-grpc-dev is not installed";
  if (!existsSync("/usr/share/gocode/src/github.com/golang/protobuf/proto/wire.go"))
    return "golang-github-golang-protobuf-1-5-dev is not installed";
  return null;
}

describeNetns("the Go client package, built offline outside the repository", () => {
  let ns: Netns;
  let serve: ServeProcess | null = null;
  let skipReason: string | null = null;
  const procs: Spawned[] = [];

  beforeAll(async () => {
    skipReason = await goReady();
    if (skipReason !== null && inCI) throw new Error(skipReason);
    ns = await Netns.create("pkggo");
  });

  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill("SIGKILL");
    if (serve !== null) await serve.stop();
    await ns?.destroy();
  });

  it("the README's Go example is examples/even word for word", () => {
    expect(exampleBody()).toBe(readmeGoBlock());
  });

  it(
    "builds in a GOPATH of its own with no network, and the README policy answers exactly the even sequences",
    async (ctx) => {
      if (skipReason !== null) ctx.skip();
      const dir = tempDir("icmpfwd-pkg-go-");
      const gopath = join(dir, "go");
      mkdirSync(join(gopath, "src/github.com/icmpfwd"), { recursive: true });
      mkdirSync(join(gopath, "src/example.com/even"), { recursive: true });
      cpSync(join(ROOT, "clients/go"), join(gopath, "src/github.com/icmpfwd/client-go"), {
        recursive: true,
      });
      cpSync(EXAMPLE, join(gopath, "src/example.com/even/main.go"));
      const env: NodeJS.ProcessEnv = {
        PATH: "/usr/bin:/bin",
        HOME: process.env.HOME ?? "/root",
        GO111MODULE: "off",
        GOPATH: `${gopath}:/usr/share/gocode`,
        GOFLAGS: "",
      };
      const build = ns.spawn(
        "sh",
        ["-c", `cd '${gopath}/src/example.com/even' && go build -o '${dir}/even' .`],
        env,
      );
      const timer = setTimeout(() => build.child.kill("SIGKILL"), BUILD_TIMEOUT_MS - 10_000);
      const built = await build.exited;
      clearTimeout(timer);
      expect(built.code, build.output()).toBe(0);

      serve = await startServe(ns, ["--deadline", "2000"]);
      const s = serve;
      const policy = ns.spawn(join(dir, "even"), []);
      procs.push(policy);
      await expectEvenPingsDecided(ns, s, policy);
      policy.child.kill("SIGTERM");
      const { code } = await policy.exited;
      expect(code, policy.output()).toBe(0);
      expect(policy.output()).toMatch(
        /^decided=40 reply=20 consume=20 fallthrough=0 errors=0 observed=0 sessions=1 <nil>$/m,
      );
    },
    BUILD_TIMEOUT_MS + 60_000,
  );
});
