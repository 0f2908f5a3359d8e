// A FIFO shared/exclusive gate: the driver-wide lock of the built-in driver, kept only where it
// matters. Endpoint work takes it shared (any number at once); network creation and deletion take
// it exclusive, so their conflict checks see a stable set of networks and no endpoint work runs
// beside them. Waiters are served in arrival order: an exclusive waiter holds back later shared
// ones, so a network operation cannot be starved by a stream of endpoint work.

type Release = () => void;

interface Waiter {
  readonly exclusive: boolean;
  readonly grant: () => void;
}

export class FifoGate {
  private shared = 0;
  private exclusive = false;
  private readonly waiters: Waiter[] = [];

  get sharedHolders(): number {
    return this.shared;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** An exclusive holder runs, or one waits: network-wide work is in progress. */
  get exclusiveActive(): boolean {
    return this.exclusive || this.waiters.some((w) => w.exclusive);
  }

  acquireShared(): Promise<Release> | Release {
    // Fast path without a promise: the hot path takes this on every endpoint request.
    if (!this.exclusive && this.waiters.length === 0) {
      this.shared++;
      return this.releaseShared;
    }
    return new Promise((resolve) => {
      this.waiters.push({
        exclusive: false,
        grant: () => {
          this.shared++;
          resolve(this.releaseShared);
        },
      });
    });
  }

  acquireExclusive(): Promise<Release> {
    return new Promise((resolve) => {
      this.waiters.push({
        exclusive: true,
        grant: () => {
          this.exclusive = true;
          resolve(this.releaseExclusive);
        },
      });
      this.wake();
    });
  }

  private readonly releaseShared: Release = () => {
    this.shared--;
    this.wake();
  };

  private readonly releaseExclusive: Release = () => {
    this.exclusive = false;
    this.wake();
  };

  private wake(): void {
    while (this.waiters.length > 0 && !this.exclusive) {
      const next = this.waiters[0] as Waiter;
      if (next.exclusive) {
        if (this.shared > 0) return;
        this.waiters.shift();
        next.grant();
        return;
      }
      this.waiters.shift();
      next.grant();
    }
  }
}
