// A debug line per batch (--log-level debug): pipeline, size, failures by kind, how long it took
// and where the time went. From the batcher's diagnostics channel, so nothing is paid per batch
// unless debug lines are wanted.
import type { Logger } from 'pino';
import { batchChannel, type BatchEvent } from '../batching/batcher.js';

/** Subscribes when `log` writes debug lines; returns the unsubscriber. */
export function logBatches(log: Logger): () => void {
  if (!log.isLevelEnabled('debug')) return () => undefined;
  const onBatch = (msg: unknown): void => {
    const ev = msg as BatchEvent;
    const t = ev.timings;
    log.debug(
      {
        pipeline: ev.label,
        batchId: ev.batchId,
        size: ev.size,
        failed: ev.failed,
        outcome: ev.failed === 0 ? 'ok' : ev.failed === ev.size ? 'failed' : 'partial',
        ms: Math.round(ev.queueMs * 10) / 10,
        ...(t === null ? {} : { ipMs: Math.round(t.ipMs * 10) / 10, fwMs: Math.round(t.fwMs * 10) / 10, ipSpawns: t.ipSpawns, fwSpawns: t.fwSpawns }),
      },
      'batch',
    );
  };
  batchChannel.subscribe(onBatch);
  return () => batchChannel.unsubscribe(onBatch);
}
