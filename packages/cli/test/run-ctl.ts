// Runs eraftkv-ctl in this process, as a user would from a shell, and keeps what it printed.
import { runCtl } from '../src';

export interface CtlRun {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

export async function ctl(...argv: string[]): Promise<CtlRun> {
  let out = '';
  let err = '';
  const code = await runCtl(argv, {
    out: (text) => {
      out += text;
    },
    err: (text) => {
      err += text;
    },
  });
  return { code, out, err };
}
