// The leases of a kv group (docs/leases.md) as its replicated state holds them: each lease's TTL
// and the keys attached to it. Granting, revoking and attaching are log entries applied like any
// write, so every replica holds the same leases; when a lease expires is not replicated (the
// leader decides it, lease-keeper.ts).
//
// Records (state-layout.ts): 'L' u64 id -> u32 TTL seconds; 'A' u64 id, key -> nothing (the key is
// attached to the lease). Both are mirrored in memory, with the lease of each attached key, so
// that a put never reads the disk to find the lease a key had.
import type { StorageEngine, WriteOp } from '@eraftkv/raft-server';
import {
  attachmentKey,
  attachmentRange,
  attachmentStart,
  attachmentEnd,
  leaseKey,
  leaseStart,
  leaseEnd,
  readU64,
} from './state-layout';

export interface Lease {
  readonly id: number;
  readonly ttlSeconds: number;
  /** The keys attached (latin1 strings of their bytes). */
  readonly keys: Set<string>;
}

export class LeaseTable {
  private readonly leases = new Map<number, Lease>();
  private readonly leaseOfKey = new Map<string, number>();

  static async load(engine: StorageEngine): Promise<LeaseTable> {
    const table = new LeaseTable();
    for await (const [key, value] of engine.iterate({ gte: leaseStart, lt: leaseEnd })) {
      if (key.length !== 9 || value.length !== 4)
        throw new Error(`${engine.path}: a lease record is damaged (${key.toString('hex')})`);
      const id = readU64(key, 1);
      table.leases.set(id, { id, ttlSeconds: value.readUInt32BE(0), keys: new Set() });
    }
    for await (const [key] of engine.iterate({ gte: attachmentStart, lt: attachmentEnd })) {
      if (key.length < 10)
        throw new Error(`${engine.path}: a lease attachment is damaged (${key.toString('hex')})`);
      const id = readU64(key, 1);
      const lease = table.leases.get(id);
      if (lease === undefined)
        throw new Error(`${engine.path}: a key is attached to lease ${id}, which is not held`);
      const user = key.toString('latin1', 9);
      lease.keys.add(user);
      table.leaseOfKey.set(user, id);
    }
    return table;
  }

  get(id: number): Lease | undefined {
    return this.leases.get(id);
  }

  all(): Lease[] {
    return [...this.leases.values()].sort((a, b) => a.id - b.id);
  }

  size(): number {
    return this.leases.size;
  }

  /** The lease `key` (a user key) is attached to, or 0. */
  leaseOf(key: Uint8Array): number {
    return this.leaseOfKey.get(Buffer.from(key).toString('latin1')) ?? 0;
  }

  grant(ops: WriteOp[], id: number, ttlSeconds: number): void {
    const value = Buffer.alloc(4);
    value.writeUInt32BE(ttlSeconds);
    ops.push({ type: 'put', key: leaseKey(id), value });
    this.leases.set(id, { id, ttlSeconds, keys: new Set() });
  }

  /** Removes the lease and every attachment; returns the keys that were attached. */
  revoke(ops: WriteOp[], id: number): Buffer[] {
    const lease = this.leases.get(id);
    if (lease === undefined) return [];
    const keys: Buffer[] = [];
    for (const user of lease.keys) {
      const key = Buffer.from(user, 'latin1');
      ops.push({ type: 'del', key: attachmentKey(id, key) });
      this.leaseOfKey.delete(user);
      keys.push(key);
    }
    ops.push({ type: 'del', key: leaseKey(id) });
    this.leases.delete(id);
    return keys;
  }

  /**
   * The attached keys that `slotOf` places in `slots`: how many, and the first `limit` of them
   * in key order with their lease (what a move's source names when it refuses to move them).
   */
  attachedIn(
    slots: ReadonlySet<number>,
    slotOf: (key: Buffer) => number,
    limit: number,
  ): { count: number; first: { key: Buffer; lease: number; slot: number }[] } {
    const found: { key: Buffer; lease: number; slot: number }[] = [];
    for (const [user, lease] of this.leaseOfKey) {
      const key = Buffer.from(user, 'latin1');
      const slot = slotOf(key);
      if (slots.has(slot)) found.push({ key, lease, slot });
    }
    found.sort((a, b) => Buffer.compare(a.key, b.key));
    return { count: found.length, first: found.slice(0, limit) };
  }

  /** Attaches `key` to lease `id` (0: to none), detaching it from the one it had. */
  attach(ops: WriteOp[], key: Uint8Array, id: number): void {
    const user = Buffer.from(key).toString('latin1');
    const old = this.leaseOfKey.get(user) ?? 0;
    if (old === id) return;
    if (old !== 0) {
      ops.push({ type: 'del', key: attachmentKey(old, key) });
      this.leases.get(old)?.keys.delete(user);
      this.leaseOfKey.delete(user);
    }
    if (id !== 0) {
      ops.push({ type: 'put', key: attachmentKey(id, key), value: Buffer.alloc(0) });
      this.leases.get(id)?.keys.add(user);
      this.leaseOfKey.set(user, id);
    }
  }

  /** The attachment records of lease `id` (for tests and checks). */
  static range(id: number): { gte: Buffer; lt: Buffer } {
    return attachmentRange(id);
  }
}
