// A reader-writer gate for async work. The data state machine applies a batch of entries (and
// restores snapshots) exclusively, and serves reads shared: a read request with several ops then
// sees one applied state, never half of a batch, although each RocksDB read awaits. Writers are
// preferred: once one waits, new readers queue behind it, so a stream of reads cannot hold the
// Raft apply loop back.

interface Waiter {
  readonly exclusive: boolean;
  readonly resolve: () => void;
}

export class ReadWriteGate {
  private readers = 0;
  private writer = false;
  private readonly queue: Waiter[] = [];

  /** Runs `work` while no exclusive holder runs. */
  async shared<T>(work: () => Promise<T>): Promise<T> {
    await this.acquire(false);
    try {
      return await work();
    } finally {
      this.release(false);
    }
  }

  /** Runs `work` alone. */
  async exclusive<T>(work: () => Promise<T>): Promise<T> {
    await this.acquire(true);
    try {
      return await work();
    } finally {
      this.release(true);
    }
  }

  private acquire(exclusive: boolean): Promise<void> {
    if (this.queue.length === 0 && this.admits(exclusive)) {
      this.take(exclusive);
      return Promise.resolve();
    }
    return new Promise((resolve) => this.queue.push({ exclusive, resolve }));
  }

  private admits(exclusive: boolean): boolean {
    return exclusive ? !this.writer && this.readers === 0 : !this.writer;
  }

  private take(exclusive: boolean): void {
    if (exclusive) this.writer = true;
    else this.readers++;
  }

  private release(exclusive: boolean): void {
    if (exclusive) this.writer = false;
    else this.readers--;
    // Admit waiters in arrival order: a writer alone, or every reader up to the next writer.
    while (this.queue.length > 0 && this.admits(this.queue[0].exclusive)) {
      const next = this.queue.shift() as Waiter;
      this.take(next.exclusive);
      next.resolve();
      if (next.exclusive) break;
    }
  }
}
