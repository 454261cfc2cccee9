// The live side of watch: the changes of every apply batch, handed to the watchers whose keys they
// touch once the batch is on disk, in revision order (slot marks go to every watcher). A watcher of one key is found by a map
// lookup, one of a range or a prefix by a walk over the range watchers, so a change costs what
// its own watchers cost, not one check per watcher of the node.
import { isSlotMark, type HistoryItem } from './watch-history';

/** The keys a watch covers: one key (end undefined), [start, end), or every key from start on. */
export interface WatchRange {
  readonly start: Buffer;
  /** undefined: `start` alone; null: every key from `start` on. */
  readonly end: Buffer | null | undefined;
}

export function rangeHolds(range: WatchRange, key: Buffer): boolean {
  if (range.end === undefined) return key.equals(range.start);
  if (Buffer.compare(key, range.start) < 0) return false;
  return range.end === null || Buffer.compare(key, range.end) < 0;
}

export interface HubWatcher {
  readonly range: WatchRange;
  /**
   * The changes of one apply batch this watcher covers, and the batch's last revision: every
   * change up to it has now been handed over. Batches with nothing for the watcher are not
   * delivered: the hub's `revision` says how far it has published.
   */
  deliver(items: readonly HistoryItem[], revision: number): void;
  /** The hub closes: the watcher must end (it missed nothing yet, `reason` says why). */
  cut(reason: string): void;
}

export class WatchHub {
  private readonly byKey = new Map<string, Set<HubWatcher>>();
  private readonly ranges = new Set<HubWatcher>();
  private count = 0;
  /** Every change up to this revision has been handed to the watchers that cover it. */
  revision = 0;

  add(watcher: HubWatcher): void {
    if (watcher.range.end === undefined) {
      const id = watcher.range.start.toString('latin1');
      let set = this.byKey.get(id);
      if (set === undefined) this.byKey.set(id, (set = new Set()));
      if (set.has(watcher)) return;
      set.add(watcher);
    } else {
      if (this.ranges.has(watcher)) return;
      this.ranges.add(watcher);
    }
    this.count++;
  }

  remove(watcher: HubWatcher): void {
    if (watcher.range.end === undefined) {
      const id = watcher.range.start.toString('latin1');
      const set = this.byKey.get(id);
      if (set === undefined || !set.delete(watcher)) return;
      if (set.size === 0) this.byKey.delete(id);
    } else if (!this.ranges.delete(watcher)) return;
    this.count--;
  }

  size(): number {
    return this.count;
  }

  /** Hands the changes of a batch applied through `revision` to the watchers that cover them. */
  publish(items: readonly HistoryItem[], revision: number): void {
    this.revision = revision;
    if (this.count === 0) return;
    const matched = new Map<HubWatcher, HistoryItem[]>();
    const add = (watcher: HubWatcher, item: HistoryItem): void => {
      const list = matched.get(watcher);
      if (list === undefined) matched.set(watcher, [item]);
      else list.push(item);
    };
    for (const change of items) {
      if (isSlotMark(change)) {
        for (const watcher of this.everyWatcher()) add(watcher, change);
        continue;
      }
      const exact = this.byKey.get(change.key.toString('latin1'));
      if (exact !== undefined) for (const watcher of exact) add(watcher, change);
      for (const watcher of this.ranges)
        if (rangeHolds(watcher.range, change.key)) add(watcher, change);
    }
    for (const [watcher, list] of matched) watcher.deliver(list, revision);
  }

  /** Ends every watcher (the node stops, or its state jumped to a snapshot). */
  cutAll(reason: string): void {
    const all = [...this.everyWatcher()];
    this.byKey.clear();
    this.ranges.clear();
    this.count = 0;
    for (const watcher of all) watcher.cut(reason);
  }

  private *everyWatcher(): Generator<HubWatcher> {
    for (const set of this.byKey.values()) yield* set;
    yield* this.ranges;
  }
}
