// Which binary does what. Chosen once at start (flags and environment: src/config/), handed to
// every worker thread once (workerData), and never threaded through call signatures again.

export interface ToolPaths {
  readonly ip: string;
  readonly iptablesRestore: string;
  readonly ip6tablesRestore: string;
  readonly iptablesSave: string;
  readonly ip6tablesSave: string;
  readonly conntrack: string;
}

export const DEFAULT_TOOLS: ToolPaths = {
  ip: 'ip',
  iptablesRestore: 'iptables-restore',
  ip6tablesRestore: 'ip6tables-restore',
  iptablesSave: 'iptables-save',
  ip6tablesSave: 'ip6tables-save',
  conntrack: 'conntrack',
};

export type Family = 4 | 6;

/** The one place that picks the IPv4 or the IPv6 tool of a kind. */
export function familyTool(tools: ToolPaths, family: Family, kind: 'restore' | 'save' | 'list'): string {
  const save = family === 4 ? tools.iptablesSave : tools.ip6tablesSave;
  switch (kind) {
    case 'restore':
      return family === 4 ? tools.iptablesRestore : tools.ip6tablesRestore;
    case 'save':
      return save;
    case 'list':
      // `iptables` / `ip6tables` next to the configured iptables-save.
      return save.replace(/-save$/, '');
  }
}
