// eraftkv-ctl: see ctl.ts.
import { exitOnBrokenPipe } from '../broken-pipe';
import { runCtl } from '../ctl';

exitOnBrokenPipe([process.stdout, process.stderr]);
void runCtl(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
