// Clears conntrack entries whose reply direction involves an endpoint address, as the built-in
// driver does on RevokeExternalConnectivity (moby/moby#8795): no stale flow keeps going to a
// container that is gone. Best effort: "0 flow entries deleted" is the common case.
import type { ConntrackFlush } from '../batching/ops.js';
import { runTool, type ToolPaths } from './spawn.js';

export async function flushConntrack(flushes: readonly ConntrackFlush[], tools: ToolPaths): Promise<void> {
  for (const f of flushes) {
    const fam = f.family === 4 ? 'ipv4' : 'ipv6';
    await runTool(tools.conntrack, ['-D', '-f', fam, '--reply-src', f.address]);
    await runTool(tools.conntrack, ['-D', '-f', fam, '--reply-dst', f.address]);
  }
}
