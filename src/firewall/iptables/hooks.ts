// The jumps from the built-in chains into ours: present exactly once each, in the right place.
import type { IpTable, RuleLine } from '../types.js';
import { HOOKS } from './layout.js';
import { saveTables } from './lines.js';

export interface HookState {
  /** how many times each hook rule is present now (from iptables-save) */
  readonly forwardJumps: number;
  readonly dockerUserFirst: boolean; // FORWARD's first rule jumps to DOCKER-USER
  readonly preroutingJumps: number;
  readonly outputJumps: number;
  readonly postroutingJumps: number;
  readonly mangleJumps: number;
}

/** Lines that make each hook present exactly once, and in the right place. */
export function planHooks(state: HookState): RuleLine[] {
  const out: RuleLine[] = [];
  const fix = (hook: { table: IpTable; spec: string }, count: number, insertAt: number): void => {
    for (let i = 1; i < count; i++) out.push({ table: hook.table, line: `-D ${hook.spec}` });
    if (count === 0) {
      const [chain, ...rest] = hook.spec.split(' ');
      out.push({ table: hook.table, line: `-I ${chain} ${insertAt} ${rest.join(' ')}` });
    }
  };
  fix(HOOKS.forward, state.forwardJumps, state.dockerUserFirst ? 2 : 1);
  fix(HOOKS.prerouting, state.preroutingJumps, 1);
  fix(HOOKS.output, state.outputJumps, 1);
  fix(HOOKS.postrouting, state.postroutingJumps, 1);
  fix(HOOKS.mangle, state.mangleJumps, 1);
  return out;
}

/** Count hook rules in `iptables-save` output. */
export function readHookState(save: string): HookState {
  const tables = saveTables(save);
  const count = (hook: { table: IpTable; spec: string }): number => (tables.get(hook.table) ?? []).filter((l) => l === `-A ${hook.spec}`).length;
  const forwardRules = (tables.get('filter') ?? []).filter((l) => l.startsWith('-A FORWARD '));
  return {
    forwardJumps: count(HOOKS.forward),
    dockerUserFirst: forwardRules[0] === '-A FORWARD -j DOCKER-USER',
    preroutingJumps: count(HOOKS.prerouting),
    outputJumps: count(HOOKS.output),
    postroutingJumps: count(HOOKS.postrouting),
    mangleJumps: count(HOOKS.mangle),
  };
}
