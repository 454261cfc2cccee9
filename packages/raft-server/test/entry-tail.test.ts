import { EntryType, type Entry } from '@eraftkv/raft';
import { EntryTail } from '../src/log-store/entry-tail';

function entry(index: number, bytes = 10): Entry {
  return { index, term: 1, type: EntryType.Normal, data: Buffer.alloc(bytes, index % 256) };
}

describe('EntryTail', () => {
  it('keeps entries in index order and counts their bytes', () => {
    const tail = new EntryTail(5);
    expect(tail.first).toBe(5);
    for (let i = 5; i < 15; i++) tail.push(entry(i));
    expect(tail.length).toBe(10);
    expect(tail.bytes).toBe(100);
    expect(tail.at(7).data).toEqual(Buffer.alloc(10, 7));
    expect(tail.slice(8, 11).map((e) => e.index)).toEqual([8, 9, 10]);
  });

  it('drops from the front without losing the indexes of the rest', () => {
    const tail = new EntryTail(1);
    for (let i = 1; i <= 20_000; i++) tail.push(entry(i));
    // Far past the point where the dead prefix of the array is dropped.
    for (let dropped = 0; dropped < 15_000; dropped += 1000) tail.dropFront(1000);
    expect(tail.first).toBe(15_001);
    expect(tail.length).toBe(5000);
    expect(tail.bytes).toBe(50_000);
    expect(tail.at(15_001).index).toBe(15_001);
    expect(tail.at(20_000).index).toBe(20_000);
    expect(tail.slice(19_999, 20_001).map((e) => e.index)).toEqual([19_999, 20_000]);
    // Dropping more than it holds leaves it empty, continuing after the dropped indexes.
    tail.dropFront(6000);
    expect(tail.length).toBe(0);
    expect(tail.bytes).toBe(0);
    expect(tail.first).toBe(21_001);
    tail.push(entry(21_001));
    expect(tail.at(21_001).index).toBe(21_001);
  });

  it('truncates a conflicting suffix', () => {
    const tail = new EntryTail(1);
    for (let i = 1; i <= 10; i++) tail.push(entry(i));
    tail.dropFront(3);
    tail.truncateFrom(8);
    expect(tail.length).toBe(4);
    expect(tail.bytes).toBe(40);
    expect(tail.slice(4, 8).map((e) => e.index)).toEqual([4, 5, 6, 7]);
    tail.push(entry(8, 3));
    expect(tail.at(8).data.length).toBe(3);
    // Truncating at or before the first entry empties it; it continues at that index.
    tail.truncateFrom(2);
    expect(tail.length).toBe(0);
    expect(tail.first).toBe(2);
    // Truncating past the end changes nothing.
    tail.push(entry(2));
    tail.truncateFrom(9);
    expect(tail.length).toBe(1);
  });

  it('copies data out of the buffers it arrives in; large data gets a buffer of its own', () => {
    const tail = new EntryTail(1);
    const message = Buffer.alloc(1 << 20, 1);
    tail.push({ ...entry(1), data: message.subarray(0, 100) });
    tail.push({ ...entry(2), data: message.subarray(100, 200 * 1024) });
    message.fill(9);
    expect(tail.at(1).data).toEqual(Buffer.alloc(100, 1));
    expect(tail.at(1).data.buffer).not.toBe(message.buffer);
    expect(tail.at(2).data.length).toBe(200 * 1024 - 100);
    expect(tail.at(2).data.buffer.byteLength).toBe(200 * 1024 - 100);
  });
});
