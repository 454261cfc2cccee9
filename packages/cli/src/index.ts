// @eraftkv/cli: eraftkv-ctl, the command-line tool (see ctl.ts).
export { runCtl, ctlVersion } from './ctl';
export { exitCodes } from './exit-codes';
export type { Io, WriteOut } from './output';
