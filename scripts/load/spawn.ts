// Starts the plugin inside a throwaway network namespace (`ip netns add` + `nsenter --net`), with
// its socket and books in a temporary folder, and takes all of it down again. One command for the
// user; nothing touches the namespace the harness itself runs in.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCmd, runOk, runSyncCmd } from './exec.js';

export interface SpawnOptions {
  readonly batchMax?: number;
  readonly batchWindowMs?: number;
  readonly workers?: number;
  readonly maxQueue?: number;
  readonly writeBehindDeletes?: boolean;
  /** extra node flags for the plugin process, e.g. ["--cpu-prof", "--cpu-prof-dir=/tmp/prof"] */
  readonly nodeArgs?: readonly string[];
  readonly logLevel?: string;
}

export interface PluginHandle {
  readonly pid: number;
  readonly socketPath: string;
  /** /run/netns/<name>: kernel checks run here through nsenter */
  readonly nsPath: string;
  readonly nsName: string;
  readonly logFile: string;
  /** SIGTERM (drain), wait, then delete the namespace and the temp folder. */
  stop(): Promise<{ exitCode: number | null; logTail: string }>;
  logTail(lines?: number): string;
}

const BIN = fileURLToPath(new URL('../../../bin/batchbridge.js', import.meta.url));

// Emergency cleanup if the harness is interrupted: kill what we started, delete what we created.
const emergency = new Set<() => void>();
let hooked = false;
function hookSignals(): void {
  if (hooked) return;
  hooked = true;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\nload: ${sig}: cleaning up\n`);
      for (const f of emergency) {
        try {
          f();
        } catch {
          // best effort
        }
      }
      process.exit(130);
    });
  }
}
export function onEmergency(f: () => void): () => void {
  hookSignals();
  emergency.add(f);
  return () => emergency.delete(f);
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines - 1).join('\n');
  } catch {
    return '';
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z');
  } catch {
    return false;
  }
}

export async function spawnPlugin(opts: SpawnOptions = {}): Promise<PluginHandle> {
  const id = randomBytes(4).toString('hex');
  const nsName = `bbload-${id}`;
  const nsPath = `/run/netns/${nsName}`;
  const dir = mkdtempSync('/tmp/bbload-');
  const socketDir = join(dir, 'sock');
  const name = `bbload-${id}`;
  const socketPath = join(socketDir, `${name}.sock`);
  const logFile = join(dir, 'plugin.log');
  await runOk(['ip', 'netns', 'add', nsName]);
  const dropNs = (): void => {
    if (existsSync(nsPath)) runSyncCmd(['ip', 'netns', 'delete', nsName]);
    rmSync(dir, { recursive: true, force: true });
  };
  let unhook = onEmergency(dropNs);
  try {
    await runOk(['ip', '-n', nsName, 'link', 'set', 'lo', 'up']);
  } catch (e) {
    dropNs();
    unhook();
    throw e;
  }
  const args = [
    `--net=${nsPath}`,
    process.execPath,
    ...(opts.nodeArgs ?? []),
    BIN,
    'serve',
    '--name', name,
    '--state-dir', join(dir, 'state'),
    '--socket-dir', socketDir,
    '--log-level', opts.logLevel ?? 'warn',
    '--cni-socket', join(dir, 'cni.sock'),
  ];
  if (opts.batchMax !== undefined) args.push('--batch-max', String(opts.batchMax));
  if (opts.batchWindowMs !== undefined) args.push('--batch-window-ms', String(opts.batchWindowMs));
  if (opts.workers !== undefined) args.push('--workers', String(opts.workers));
  if (opts.maxQueue !== undefined) args.push('--max-queue', String(opts.maxQueue));
  if (opts.writeBehindDeletes === true) args.push('--write-behind-deletes');
  const fd = openSync(logFile, 'a');
  // nsenter (without --fork) execs node in place: the pid we get is the plugin's.
  const child = spawn('nsenter', args, { stdio: ['ignore', fd, fd], detached: false });
  closeSync(fd);
  const pid = child.pid;
  if (pid === undefined) {
    dropNs();
    unhook();
    throw new Error('could not start nsenter');
  }
  let exitCode: number | null = null;
  let exited = false;
  const exitP = new Promise<void>((r) =>
    child.on('exit', (code, sig) => {
      exited = true;
      exitCode = code ?? (sig ? 128 : null);
      r();
    }),
  );
  unhook();
  unhook = onEmergency(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
    dropNs();
  });

  const deadline = Date.now() + 20_000;
  while (!existsSync(socketPath)) {
    if (exited || Date.now() > deadline) {
      if (!exited) child.kill('SIGKILL');
      await exitP;
      const t = tail(logFile, 30);
      dropNs();
      unhook();
      throw new Error(`plugin did not come up (exit ${String(exitCode)}):\n${t}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }

  let stopping: Promise<{ exitCode: number | null; logTail: string }> | null = null;
  return {
    pid,
    socketPath,
    nsPath,
    nsName,
    logFile,
    logTail: (n = 30) => tail(logFile, n),
    stop: () =>
      (stopping ??= (async () => {
        if (!exited) {
          child.kill('SIGTERM');
          const t = setTimeout(() => {
            if (alive(pid)) child.kill('SIGKILL');
          }, 60_000);
          await exitP;
          clearTimeout(t);
        }
        const logTail = tail(logFile, 30);
        // Anything still inside (a stuck tool) would keep nothing alive: the namespace goes.
        const r = await runCmd(['ip', 'netns', 'delete', nsName]);
        if (r.code !== 0 && existsSync(nsPath)) process.stderr.write(`load: could not delete netns ${nsName}: ${r.stderr}\n`);
        rmSync(dir, { recursive: true, force: true });
        unhook();
        return { exitCode, logTail };
      })()),
  };
}
