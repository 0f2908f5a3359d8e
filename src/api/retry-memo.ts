// dockerd's answer to a lost answer. dockerd 20.10 resends a plugin call whose HTTP round trip
// failed — the plugin restarted, or the connection broke after the request went out — but it
// resends it WITH AN EMPTY BODY: its first attempt used the request body up (moby
// pkg/plugins/client.go; seen through a proxy, test/e2e/dockerd-retry.test.ts). So a create
// whose answer was lost comes back as the same call without arguments, 1–16 s later.
//
// Refusing that retry makes dockerd report the create as failed and forget the network or
// endpoint while we keep it: a network with a fixed subnet or bridge name could then never be
// created again, and the forgotten endpoint's address would go to the next container. So we
// answer it as the create it repeats: the one recent create of that kind dockerd has not yet
// shown it knows about (no later call named it). Two such creates at once: we cannot tell which
// one is repeated, and refuse.
const WINDOW_MS = 35_000; // dockerd gives up after about 31 s of backoff (1 + 2 + 4 + 8 + 16)

export type CreateCall = 'network' | 'endpoint';

interface Entry {
  readonly call: CreateCall;
  readonly id: string;
  readonly at: number;
  readonly reply: object;
}

export class RetryMemo {
  private entries: Entry[] = [];

  constructor(private readonly now: () => number = Date.now) {}

  /** A create answered (or about to be): it may come back as an argument-less retry. */
  remember(call: CreateCall, id: string, reply: object, at = this.now()): void {
    this.forget(id);
    this.entries.push({ call, id, at, reply });
  }

  /** A later call names this network or endpoint: dockerd has its answer. */
  forget(id: string): void {
    if (this.entries.length > 0) this.entries = this.entries.filter((e) => e.id !== id);
  }

  /** The answer for an argument-less retry of `call`, or how many creates it could repeat (0, or 2+). */
  replay(call: CreateCall): { reply: object } | { ambiguous: number } {
    const since = this.now() - WINDOW_MS;
    this.entries = this.entries.filter((e) => e.at >= since);
    const open = this.entries.filter((e) => e.call === call);
    if (open.length === 1 && open[0] !== undefined) {
      this.forget(open[0].id);
      return { reply: open[0].reply };
    }
    return { ambiguous: open.length };
  }
}
