// The only place the load harness and the benches start processes: argv arrays, never a shell;
// scripts go through stdin. Every kernel command is run inside a namespace by prefixing
// `nsenter --net=<path>` (see inNetns).
import { spawn, spawnSync } from 'node:child_process';

export interface CmdResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function runCmd(argv: readonly string[], input?: string, timeoutMs = 120_000): Promise<CmdResult> {
  return new Promise((resolve) => {
    const [file, ...args] = argv;
    if (file === undefined) {
      resolve({ code: -1, stdout: '', stderr: 'empty argv' });
      return;
    }
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout: '', stderr: `${file}: ${e.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code: code ?? (signal ? 128 : -1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8') + (signal ? `\n${file} killed by ${signal}` : ''),
      });
    });
    child.stdin.on('error', () => undefined); // the tool may exit before reading all of stdin
    child.stdin.end(input ?? '');
  });
}

export async function runOk(argv: readonly string[], input?: string): Promise<string> {
  const r = await runCmd(argv, input);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}: ${r.stderr.trim().slice(0, 2000)}`);
  return r.stdout;
}

export function runSyncCmd(argv: readonly string[], input?: string): CmdResult {
  const [file, ...args] = argv;
  if (file === undefined) return { code: -1, stdout: '', stderr: 'empty argv' };
  const r = spawnSync(file, args, { input: input ?? '', encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' }, maxBuffer: 256 * 1024 * 1024 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
}

/** argv run inside the network namespace at nsPath (`/run/netns/NAME` or `/proc/PID/ns/net`). */
export function inNetns(nsPath: string | null, argv: readonly string[]): string[] {
  return nsPath === null ? [...argv] : ['nsenter', `--net=${nsPath}`, ...argv];
}
