// One FIFO lane per network. Within a lane, the operations of one endpoint run strictly one
// after another (an endpoint's operations never overtake each other); operations of different
// endpoints go to the batcher in the order they arrived, and the batcher keeps that order, so a
// network's changes reach the kernel in acceptance order while many endpoints share a batch.

export class Lanes {
  private readonly tails = new Map<string, Map<string, Promise<unknown>>>();

  /** Runs fn after every earlier operation of the same endpoint has finished. */
  run<T>(networkId: string, endpointId: string, fn: () => Promise<T>): Promise<T> {
    let lane = this.tails.get(networkId);
    if (lane === undefined) this.tails.set(networkId, (lane = new Map()));
    const prev = lane.get(endpointId);
    const next = prev === undefined ? fn() : prev.then(fn, fn);
    const tail = next.then(
      () => undefined,
      () => undefined,
    );
    lane.set(endpointId, tail);
    void tail.then(() => {
      // Forget the endpoint once its last operation is done: lanes stay O(in-flight), not O(live).
      const l = this.tails.get(networkId);
      if (l !== undefined && l.get(endpointId) === tail) {
        l.delete(endpointId);
        if (l.size === 0) this.tails.delete(networkId);
      }
    });
    return next;
  }

  /** True while an operation of this endpoint is queued or running. */
  busy(networkId: string, endpointId: string): boolean {
    return this.tails.get(networkId)?.has(endpointId) === true;
  }

  /** Endpoints with an operation queued or running. */
  *activeEndpoints(): Iterable<string> {
    for (const l of this.tails.values()) yield* l.keys();
  }

  /** Operations in flight (for the queue-depth backpressure check). */
  get active(): number {
    let n = 0;
    for (const l of this.tails.values()) n += l.size;
    return n;
  }
}
