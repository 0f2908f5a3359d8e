// The durable books. Schema (SQLite, WAL mode, one file `<state-dir>/batchbridge.db`):
//   networks(id PK, bridge UNIQUE, record JSON)      one row per network we manage
//   endpoints(id PK, network_id, host_if UNIQUE, record JSON)
//   intents(batch_id PK, record JSON)                 work begun but not yet booked
//   meta(key PK, value)                               schema version, owner group
// Every change of a batch is booked in one transaction after the kernel work, and the intent
// that announced it is removed in that same transaction.
import type { EndpointRecord, Intent, NetworkRecord } from './records.js';

export interface BookChanges {
  readonly putNetworks?: readonly NetworkRecord[];
  readonly deleteNetworks?: readonly string[];
  readonly putEndpoints?: readonly EndpointRecord[];
  readonly deleteEndpoints?: readonly string[];
  readonly clearIntents?: readonly number[];
}

export interface StateStore {
  loadNetworks(): NetworkRecord[];
  loadEndpoints(): EndpointRecord[];
  loadIntents(): Intent[];
  writeIntent(intent: Intent): void;
  commit(changes: BookChanges): void;
  /** Several changes, applied in this order, in one transaction. */
  commitAll(changes: readonly BookChanges[]): void;
  /**
   * The link group this instance puts on every interface it creates (host-side veths and its
   * own bridges): its ownership mark. Made once, at random, when the books are created, so two
   * sets of books never claim each other's interfaces.
   */
  ownerGroup(): number;
  close(): void;
}
