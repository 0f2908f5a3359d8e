// Reconciliation's first step: unfinished intents, oldest first. A create that was never booked
// is undone, a delete or revoke is finished, a program is rolled back to the books.
import type { EndpointRecord, Intent } from '../../state/records.js';
import type { PlanState } from './plan-state.js';

/** 1. Unfinished intents, oldest first: undo creations, finish deletions. */
export function resolveIntents(st: PlanState): void {
  for (const intent of [...st.input.intents].sort((a, b) => a.createdAt - b.createdAt || a.batchId - b.batchId)) {
    for (const it of intent.items) resolveIntentItem(st, it, intent.batchId);
    st.clearIntents.push(intent.batchId);
  }
}

function resolveIntentItem(st: PlanState, it: Intent['items'][number], batch: number): void {
  switch (it.kind) {
    case 'endpoint-create': {
      const booked = st.endpoints.get(it.endpointId);
      if (booked !== undefined && booked.host === it.host) {
        // Finished after all (only the intent's removal failed): make sure the row is on disk.
        st.putEndpoints.set(booked.id, booked);
        return;
      }
      // Only a veth with our mark: the name may have been someone else's all along ("File exists").
      if (st.ours(it.host)) st.vethDeletes.add(it.host);
      st.note('intent-undone', it.endpointId, `endpoint creation was interrupted (batch ${batch}): never booked; its veth ${it.host} ${st.act('is removed if present', 'would be removed if present')}`, { networkId: it.networkId, endpointId: it.endpointId });
      return;
    }
    case 'endpoint-delete': {
      const booked = st.endpoints.get(it.endpointId);
      if (booked !== undefined) {
        st.unbookEndpoint(it.endpointId);
        st.note('intent-finished', it.endpointId, `endpoint deletion was interrupted (batch ${batch}): ${st.act('finished', 'would be finished')} (veth ${booked.host} removed, endpoint unbooked)`);
      }
      if ((booked?.host === it.host && st.link(it.host) !== undefined) || st.ours(it.host)) st.vethDeletes.add(it.host);
      return;
    }
    case 'ports-program':
      st.note('intent-undone', it.endpointId, `port programming was interrupted (batch ${batch}): the endpoint's rules ${st.act('are', 'would be')} rolled back to the books`);
      return;
    case 'ports-revoke': {
      const booked = st.endpoints.get(it.endpointId);
      if (booked !== undefined && booked.mappings.length > 0) {
        const next: EndpointRecord = { ...booked, mappings: [] };
        st.endpoints.set(booked.id, next);
        st.putEndpoints.set(booked.id, next);
        st.note('intent-finished', it.endpointId, `port revocation was interrupted (batch ${batch}): ${st.act('finished', 'would be finished')} (${booked.mappings.length} binding(s) released)`);
      }
      return;
    }
    case 'network-create': {
      const bookedNet = st.networks.get(it.networkId);
      if (bookedNet !== undefined) {
        st.putNetworks.set(bookedNet.spec.id, bookedNet);
        return;
      }
      const usedByOther = [...st.networks.values()].some((n) => n.spec.bridge === it.bridge);
      // An intent that does not say the bridge was ours (older books) counts as the user's.
      if (it.createdBridge === true) {
        if (!usedByOther && st.ours(it.bridge)) st.candidateOrphanBridges.add(it.bridge);
      } else {
        st.releaseUserBridge(it.bridge, it.addrs ?? [], it.restoreDown === true);
      }
      st.note('intent-undone', it.networkId, `network creation was interrupted (batch ${batch}): never booked; ${it.createdBridge === true ? `bridge ${it.bridge} ${st.act('removed if present', 'would be removed if present')}` : `addresses we added to ${it.bridge} ${st.act('removed', 'would be removed')}`}`, { networkId: it.networkId });
      return;
    }
    case 'network-delete': {
      const booked = st.networks.get(it.networkId);
      if (booked === undefined) {
        if (it.createdBridge === true && st.ours(it.bridge)) st.candidateOrphanBridges.add(it.bridge);
        return;
      }
      const eps = [...st.endpoints.values()].filter((e) => e.networkId === it.networkId);
      for (const e of eps) if (st.link(e.host) !== undefined) st.vethDeletes.add(e.host);
      st.unbookNetwork(it.networkId);
      if (booked.createdBridge) {
        if (st.link(booked.spec.bridge) !== undefined) st.bridgeDeletes.add(booked.spec.bridge);
      } else {
        st.releaseUserBridge(booked.spec.bridge, booked.addedAddrs, booked.restoreDown === true);
      }
      st.note('intent-finished', it.networkId, `network deletion was interrupted (batch ${batch}): ${st.act('finished', 'would be finished')} (${eps.length} endpoint(s), bridge ${booked.spec.bridge})`, { networkId: it.networkId });
      return;
    }
  }
}

