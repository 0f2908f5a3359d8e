// --sandbox: what dockerd does around Join/Leave with a container's network namespace, batched
// so the harness stays lean: after Join, the container end of the veth moves into a fresh
// namespace; before Leave it moves back to the plugin's namespace and the namespace is deleted.
// All of it through `ip -force -batch -` run in the plugin's namespace, one process per batch,
// one batch at a time (the next fills while one runs). The lines come from the ip vocabulary.
import { parseIpErrors } from '../../src/ip/errors.js';
import { renderIpScript, type IpLine } from '../../src/ip/lines.js';
import { inNetns, runCmd } from './exec.js';

interface Item {
  readonly lines: IpLine[];
  readonly resolve: (err: string | null) => void;
}

export class SandboxBatcher {
  private queue: Item[] = [];
  private running = false;
  batches = 0;
  lines = 0;
  private seq = 0;

  constructor(
    private readonly nsPath: string | null,
    /** named namespaces are `${prefix}${n}` */
    readonly prefix: string,
    /** a pid inside the plugin's namespace: where veths move back to */
    private readonly homePid: number,
    private readonly max = 256,
  ) {}

  newName(): string {
    return `${this.prefix}${(this.seq++).toString(36)}`;
  }

  enter(ns: string, ifname: string): Promise<string | null> {
    return this.submit([
      { op: 'netns-add', name: ns },
      { op: 'set-netns', dev: ifname, netns: ns },
    ]);
  }

  leave(ns: string, ifname: string): Promise<string | null> {
    return this.submit([
      { op: 'in-netns', name: ns, line: { op: 'set-netns', dev: ifname, netns: this.homePid } },
      { op: 'netns-del', name: ns },
    ]);
  }

  private submit(lines: IpLine[]): Promise<string | null> {
    return new Promise((resolve) => {
      this.queue.push({ lines, resolve });
      if (!this.running) void this.pump();
    });
  }

  private async pump(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0) {
      const items = this.queue.splice(0, this.max);
      const owner: number[] = [];
      const text: IpLine[] = [];
      items.forEach((it, i) => {
        for (const l of it.lines) {
          text.push(l);
          owner.push(i);
        }
      });
      this.batches++;
      this.lines += text.length;
      const r = await runCmd(inNetns(this.nsPath, ['ip', '-force', '-batch', '-']), renderIpScript(text));
      const errs = new Map<number, string>();
      for (const f of parseIpErrors(r.stderr).failures) {
        const o = owner[f.line - 1];
        if (o !== undefined && !errs.has(o)) errs.set(o, f.message);
      }
      const stray = r.code !== 0 && errs.size === 0 ? `ip -batch exited ${r.code}: ${r.stderr.trim().slice(0, 300)}` : null;
      items.forEach((it, i) => it.resolve(errs.get(i) ?? stray));
    }
    this.running = false;
  }
}
