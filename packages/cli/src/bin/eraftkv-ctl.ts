// eraftkv-ctl: see ctl.ts.
import { exitOnBrokenPipe } from '../broken-pipe';
import { runCtl } from '../ctl';

// grpc-js names the server it dials by its address, and Node warns (DEP0123) when that is an
// IP address (the certificate is still checked against the address, which is what we want):
// the warning would land in the middle of the output (and of JSON logs) on every TLS dial.
process.noDeprecation = true;
exitOnBrokenPipe([process.stdout, process.stderr]);
void runCtl(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
