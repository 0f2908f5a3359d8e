// A CNI network in the engine's books: the same kind of network a Docker CreateNetwork makes
// (bridge, gateway, NAT, isolation, ICC), made by the first ADD that names it and checked
// against every other network, Docker's included, with the same conflict rules. CNI has no
// "delete network": the network stays until `batchbridge cleanup` or a config change with no
// attachments left (then it is made again as the config now says).
import { specDifference } from '../domain/network-spec.js';
import type { Engine } from '../engine/engine.js';
import { NetworkExistsError } from '../errors.js';
import type { CniNetwork } from './net-config.js';

export async function ensureNetwork(engine: Engine, network: CniNetwork): Promise<void> {
  const booked = engine.books.networks.get(network.id);
  // The common case, taken without the exclusive gate: the network is there as configured.
  if (booked !== undefined && specDifference(booked.spec, network.spec) === null) return;
  if (booked !== undefined) {
    const diff = specDifference(booked.spec, network.spec) as string;
    const attached = engine.books.endpointCount(network.id);
    if (attached > 0) {
      throw new NetworkExistsError(
        `network "${network.name}" exists with a different configuration (${diff}) and still has ${attached} attachment(s): delete them (their pods) before changing its config`,
      );
    }
    await engine.networks.delete(network.id);
  }
  // Idempotent: concurrent first ADDs all ask, one creates, the others find it made.
  await engine.networks.create(network.spec, { cniName: network.name });
}
