// How eraftkv-ctl prints values and tables.
import { json, jsonBytes, printable, renderTable } from '../src/output';

describe('renderTable', () => {
  it('aligns every column to its widest cell, header included', () => {
    expect(
      renderTable(
        ['ID', 'ADDRESS'],
        [
          ['1', '127.0.0.1:7001'],
          ['12', 'h:1'],
        ],
      ),
    ).toBe(
      [
        '+----+----------------+',
        '| ID | ADDRESS        |',
        '+----+----------------+',
        '| 1  | 127.0.0.1:7001 |',
        '| 12 | h:1            |',
        '+----+----------------+',
        '',
      ].join('\n'),
    );
  });

  it('prints the header alone when there are no rows', () => {
    expect(renderTable(['KEY'], [])).toBe('+-----+\n| KEY |\n+-----+\n+-----+\n');
  });
});

describe('printable and jsonBytes', () => {
  it('prints UTF-8 as text and anything else as base64 with a marker', () => {
    expect(printable(Buffer.from('grüße', 'utf8'))).toBe('grüße');
    expect(printable(Buffer.from([0xff, 0x00, 0x41]))).toBe('base64:/wBB');
    expect(printable(Buffer.alloc(0))).toBe('');
  });

  it('gives JSON both the text and the base64, so binary data survives', () => {
    expect(jsonBytes(Buffer.from('hi'))).toEqual({ text: 'hi', base64: 'aGk=' });
    expect(json({ a: 1 })).toBe('{\n  "a": 1\n}\n');
  });
});
