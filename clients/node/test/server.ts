/**
 * A real `tokenwire serve --demo --port 0` for the tests, as a user runs it; the port is
 * read from its "tokenwire serving on HOST:PORT" line.
 *
 * The executable is $TOKENWIRE_BIN, else the repository's .venv/bin/tokenwire; demo models
 * are built into $TOKENWIRE_DEMO_DIR, else a fresh temporary directory.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";

export interface TestServer {
  target: string;
  output: string[];
  stop(): Promise<void>;
}

function executable(): string {
  if (process.env.TOKENWIRE_BIN) return process.env.TOKENWIRE_BIN;
  for (let dir = resolve("."); ; dir = dirname(dir)) {
    const candidate = join(dir, ".venv", "bin", "tokenwire");
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) {
      throw new Error("tokenwire executable not found: set TOKENWIRE_BIN or run `make install` at the repository root");
    }
  }
}

export async function startServer(timeoutMs = 180_000): Promise<TestServer> {
  let tempDir: string | undefined;
  let demoDir = process.env.TOKENWIRE_DEMO_DIR;
  if (!demoDir) demoDir = tempDir = mkdtempSync(join(tmpdir(), "tokenwire-node-demo-"));
  const child: ChildProcess = spawn(
    executable(),
    ["serve", "--demo", "--demo-dir", demoDir, "--host", "127.0.0.1", "--port", "0"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const output: string[] = [];
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(timer);
    }
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  };
  createInterface({ input: child.stderr! }).on("line", (l) => output.push(l));
  const target = await new Promise<string>((resolvePort, reject) => {
    const timer = setTimeout(() => reject(new Error(`no serving line in ${timeoutMs} ms:\n${output.join("\n")}`)), timeoutMs);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      output.push(line);
      const m = /tokenwire serving on ([\d.]+):(\d+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolvePort(`${m[1]}:${m[2]}`);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`tokenwire serve exited (${code}):\n${output.join("\n")}`));
    });
  }).catch(async (err) => {
    await stop();
    throw err;
  });
  return { target, output, stop };
}
