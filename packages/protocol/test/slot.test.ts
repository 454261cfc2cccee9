import { crc64JonesBigInt, slotCountDefault, slotOfKey } from '../src';

const bytes = (s: string): Uint8Array => Buffer.from(s, 'utf8');

describe('slot routing', () => {
  it('computes CRC-64/Jones with its published check value', () => {
    expect(crc64JonesBigInt(bytes('123456789'))).toBe(0xe9c6d914c4b8d9can);
    expect(crc64JonesBigInt(new Uint8Array(0))).toBe(0n);
  });

  it('maps a key to crc64 modulo the slot count', () => {
    for (const key of ['', 'a', 'hello', 'user:1000', '\u00ff\u0000binary']) {
      const expected = Number(crc64JonesBigInt(bytes(key)) % BigInt(slotCountDefault));
      expect(slotOfKey(bytes(key), slotCountDefault)).toBe(expected);
      expect(slotOfKey(bytes(key), 7)).toBe(Number(crc64JonesBigInt(bytes(key)) % 7n));
    }
  });

  it('rejects a slot count outside [1, 65536]', () => {
    expect(() => slotOfKey(bytes('k'), 0)).toThrow(RangeError);
    expect(() => slotOfKey(bytes('k'), 65537)).toThrow(RangeError);
    expect(() => slotOfKey(bytes('k'), 1.5)).toThrow(RangeError);
  });
});
