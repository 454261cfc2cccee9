import { EventEmitter } from 'node:events';
import { brokenPipeExitCode, exitOnBrokenPipe } from '../src/broken-pipe';

function errnoError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`write ${code}`), { code, errno: -32, syscall: 'write' });
}

describe('exitOnBrokenPipe', () => {
  it('exits with 128 + SIGPIPE when stdout or stderr loses its reader', () => {
    expect(brokenPipeExitCode).toBe(141);
    for (const which of [0, 1]) {
      const streams = [new EventEmitter(), new EventEmitter()];
      const exits: number[] = [];
      exitOnBrokenPipe(streams, (code) => exits.push(code));
      streams[which].emit('error', errnoError('EPIPE'));
      expect(exits).toEqual([141]);
    }
  });

  it('lets any other stream error through, as an unhandled error', () => {
    const stream = new EventEmitter();
    const exits: number[] = [];
    exitOnBrokenPipe([stream], (code) => exits.push(code));
    expect(() => stream.emit('error', errnoError('EIO'))).toThrow('write EIO');
    expect(exits).toEqual([]);
  });
});
