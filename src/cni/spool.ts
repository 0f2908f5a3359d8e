// The DEL spool: <socket>.spool/, where the forwarder records a DEL it could not hand to the
// daemon (down, restarting, killed mid-call, or shutting down). Each file is one request frame,
// written under a dot-name, fsynced and renamed, so a file with a spool name is always whole.
//
// At start the daemon replays them through the CNI handler before it answers any request, so
// a DEL recorded while the daemon was down always runs before a later ADD of the same
// container. Files are started oldest first (names sort by time); DELs of one attachment
// (CNI_CONTAINERID + CNI_IFNAME, e.g. containerd's two DELs per pod) run one after the other,
// different attachments side by side. A file is removed once handled. A DEL that fails is
// logged and dropped (DEL errors are permanent: a bad config stays bad); one the daemon asks to
// keep (`spool`) stays for the next start; an unreadable file is renamed bad-<name>.
//
// A DEL recorded just after the start-up listing (the forwarder saw the socket down, the daemon
// came up while it wrote the file) is sent again by the forwarder with the file's name (a
// claim): claimed() runs it unless the replay already did, so every spooled DEL runs once.
import { readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { renderCniError } from './cni-error.js';
import { decodeRequest, SPOOL_NAME_RE, type RequestFrame } from './frame.js';
import type { CniAnswer, CniHandler } from './handler.js';

export function spoolDirFor(socketPath: string): string {
  return `${socketPath}.spool`;
}

export interface ReplayReport {
  /** handled successfully and removed */
  replayed: number;
  /** the handler refused them: logged and removed */
  failed: number;
  /** the daemon asked to keep them for the next start */
  kept: number;
  /** unreadable: renamed bad-<name> */
  bad: number;
}

/** A .tmp- file older than this belongs to a forwarder that died before its rename. */
const STALE_TMP_MS = 10 * 60 * 1000;

export class Spool {
  private readonly handled = new Map<string, Promise<CniAnswer>>();

  constructor(
    readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** Spool file names, oldest first. */
  list(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const now = Date.now();
    for (const n of names) {
      if (!n.startsWith('.tmp-')) continue;
      try {
        if (now - statSync(join(this.dir, n)).mtimeMs > STALE_TMP_MS) rmSync(join(this.dir, n), { force: true });
      } catch {
        // gone meanwhile
      }
    }
    return names.filter((n) => SPOOL_NAME_RE.test(n)).sort();
  }

  async replay(handler: CniHandler, concurrency = 16): Promise<ReplayReport> {
    const report: ReplayReport = { replayed: 0, failed: 0, kept: 0, bad: 0 };
    const chains = new Map<string, { name: string; frame: RequestFrame }[]>();
    for (const name of this.list()) {
      let frame: RequestFrame;
      try {
        frame = decodeRequest(readFileSync(join(this.dir, name)));
      } catch (err) {
        report.bad++;
        this.log.error({ err, file: join(this.dir, name) }, 'unreadable spooled DEL; renamed bad-*');
        renameSync(join(this.dir, name), join(this.dir, `bad-${name}`));
        continue;
      }
      const key = `${frame.env.CNI_CONTAINERID ?? ''}\0${frame.env.CNI_IFNAME ?? ''}`;
      const chain = chains.get(key) ?? [];
      chain.push({ name, frame });
      chains.set(key, chain);
    }
    const queue = [...chains.values()];
    const worker = async (): Promise<void> => {
      for (let chain = queue.shift(); chain !== undefined; chain = queue.shift()) {
        for (const { name, frame } of chain) {
          const answer = await this.settle(name, () => handler({ env: frame.env, stdin: frame.stdin }));
          if (answer.spool === true) report.kept++;
          else if (answer.exitCode === 0) report.replayed++;
          else report.failed++;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker));
    if (report.replayed + report.failed + report.kept + report.bad > 0) this.log.info({ ...report, dir: this.dir }, 'replayed spooled DELs');
    return report;
  }

  /** A DEL the forwarder sent again after spooling it as `name`: runs it once. */
  claimed(name: string, run: () => Promise<CniAnswer>): Promise<CniAnswer> {
    return this.handled.get(name) ?? this.settle(name, run);
  }

  private settle(name: string, run: () => Promise<CniAnswer>): Promise<CniAnswer> {
    const p = (async (): Promise<CniAnswer> => {
      let answer: CniAnswer;
      try {
        answer = await run();
      } catch (err) {
        answer = renderCniError(err, { command: 'DEL' });
      }
      if (answer.spool === true) {
        this.log.warn({ file: name }, 'spooled DEL kept for the next start');
        return answer;
      }
      if (answer.exitCode !== 0) this.log.error({ file: name, stdout: String(answer.stdout).slice(0, 2000) }, 'spooled DEL failed; dropped');
      rmSync(join(this.dir, name), { force: true });
      return answer;
    })();
    this.handled.set(name, p);
    return p;
  }
}
