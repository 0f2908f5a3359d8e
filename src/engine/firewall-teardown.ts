// The last clean stop with no network left removes every rule, chain and hook of ours (both
// families): `docker plugin disable` + `docker plugin rm` run no code of ours afterwards, and the
// fixed skeleton a sync installs (hooks, BB-* chains, the DNAT buckets: ~400 lines per family)
// would otherwise stay on the host for good. With networks left everything stays: their
// containers keep their traffic while the plugin is away, and the next start picks them up.
import type { Engine } from './engine.js';

export type TeardownOutcome = { readonly removed: readonly string[] } | 'kept: networks left';

/** Removes our firewall when no network is booked, holding the gate so no resync runs beside it. */
export function removeFirewallIfUnused(engine: Engine): Promise<TeardownOutcome> {
  const core = engine.core;
  return core.exclusively(async () => {
    if (core.books.networks.size > 0) return 'kept: networks left';
    return { removed: await core.firewall.remove() };
  });
}
