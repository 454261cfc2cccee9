// eraftkv-ctl: see ctl.ts.
import { runCtl } from '../ctl';

void runCtl(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
