// The key ranges of role grant-permission / revoke-permission, as etcdctl spells them.
import { prefixRangeEnd } from '@eraftkv/protocol';
import { describePermission } from '../src/commands/auth';
import { rangeEndOf } from '../src/context';
import { UsageError } from '../src/exit-codes';

const b = (s: string): Buffer => Buffer.from(s);

describe('permission ranges', () => {
  it('ends a prefix at its last byte below 0xff plus one, or opens it', () => {
    expect(prefixRangeEnd(b('app/'))).toEqual(b('app0'));
    expect(prefixRangeEnd(Buffer.from([0x61, 0xff, 0xff]))).toEqual(b('b'));
    expect(prefixRangeEnd(Buffer.from([0xff]))).toEqual(Buffer.from([0]));
  });

  it('takes [end], --prefix or --from-key, one at a time', () => {
    expect(rangeEndOf(b('a'), {})).toEqual(Buffer.alloc(0));
    expect(rangeEndOf(b('a'), { end: 'c' })).toEqual(b('c'));
    expect(rangeEndOf(b('a/'), { prefix: true })).toEqual(b('a0'));
    expect(rangeEndOf(b('a'), { 'from-key': true })).toEqual(Buffer.from([0]));
    expect(() => rangeEndOf(b('a'), { end: 'c', prefix: true })).toThrow(UsageError);
    expect(() => rangeEndOf(b('c'), { end: 'a' })).toThrow(/must come after <key>/);
  });

  it('shows a permission as etcdctl does', () => {
    expect(describePermission({ type: 'read', key: b('k'), rangeEnd: Buffer.alloc(0) })).toBe('k');
    expect(describePermission({ type: 'read', key: b('a/'), rangeEnd: b('a0') })).toBe(
      '[a/, a0) (prefix a/)',
    );
    expect(describePermission({ type: 'read', key: b('a'), rangeEnd: Buffer.from([0]) })).toBe(
      '[a, <open ended>)',
    );
  });
});
