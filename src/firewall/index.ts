// Chooses the firewall backend. One today; another (nftables) is a folder beside iptables/ and
// a case here — the engine only ever sees FirewallBackend.
import type { ToolEnv } from '../tools/env.js';
import { IptablesBackend } from './iptables/backend.js';
import type { FirewallBackend } from './types.js';

export type FirewallKind = 'iptables';

export function createFirewall(kind: FirewallKind, env: ToolEnv): FirewallBackend {
  switch (kind) {
    case 'iptables':
      return new IptablesBackend(env);
  }
}
