// Summarizes V8 .cpuprofile files (node --cpu-prof): self time by function and by module, to say
// where the plugin's time goes.   node dist/bench/prof-summary.js FILE.cpuprofile [...] [--top N]
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function moduleOf(url: string): string {
  if (url === '') return '(native/vm)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return `npm:${nm[1] ?? ''}`;
  if (url.startsWith('node:')) return url.split('/')[0] ?? url;
  const d = /dist\/(.*)$/.exec(url);
  return d ? (d[1] ?? url) : url;
}

export function summarize(file: string, top: number): string {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  p.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const total = (p.endTime - p.startTime) / 1000;
  const fn = new Map<string, number>();
  const mod = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (n === undefined) continue;
    const f = `${n.callFrame.functionName || '(anonymous)'} ${moduleOf(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
    fn.set(f, (fn.get(f) ?? 0) + us);
    const m = ['(idle)', '(program)', '(garbage collector)'].includes(n.callFrame.functionName) ? n.callFrame.functionName : moduleOf(n.callFrame.url);
    mod.set(m, (mod.get(m) ?? 0) + us);
  }
  const fmt = (m: Map<string, number>): string[] =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, us]) => `  ${(us / 1000).toFixed(0).padStart(7)} ms ${((us / 1000 / total) * 100).toFixed(1).padStart(5)} %  ${k}`);
  return [`${file}: ${total.toFixed(0)} ms wall`, ' by module:', ...fmt(mod), ' by function (self):', ...fmt(fn)].join('\n');
}

const args = process.argv.slice(2);
const ti = args.indexOf('--top');
const top = ti >= 0 ? Number(args[ti + 1]) : 25;
for (const f of args.filter((a, i) => !a.startsWith('--') && (ti < 0 || i !== ti + 1))) process.stdout.write(`${summarize(f, top)}\n\n`);
