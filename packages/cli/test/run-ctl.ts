// Runs eraftkv-ctl in this process, as a user would from a shell, and keeps what it printed.
import { runCtl } from '../src';

export interface CtlRun {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** A command still running (watch): what it printed so far, and its end. */
export interface RunningCtl {
  readonly printed: () => { readonly out: string; readonly err: string };
  readonly done: Promise<CtlRun>;
}

export function startCtl(...argv: string[]): RunningCtl {
  let out = '';
  let err = '';
  const done = runCtl(argv, {
    out: (text) => {
      out += text;
    },
    err: (text) => {
      err += text;
    },
  }).then((code) => ({ code, out, err }));
  return { printed: () => ({ out, err }), done };
}

export function ctl(...argv: string[]): Promise<CtlRun> {
  return startCtl(...argv).done;
}
