// What the CNI socket hands to the daemon and what it expects back: one call of the plugin, as
// the runtime made it (environment and stdin), and the plugin's answer (exit status, stdout,
// stderr). The daemon's handler turns the first into engine work and the second from its result.

export interface CniInvocation {
  readonly env: Readonly<Record<string, string>>;
  readonly stdin: Buffer;
}

export interface CniAnswer {
  readonly exitCode: number;
  readonly stdout: string | Buffer;
  readonly stderr?: string | Buffer;
  /**
   * For a DEL the daemon cannot take now (shutting down): the forwarder records it in the spool
   * and reports success, and the daemon replays it when it starts again.
   */
  readonly spool?: boolean;
}

export type CniHandler = (req: CniInvocation) => Promise<CniAnswer>;
