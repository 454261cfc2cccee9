// eraftkv-utl: see utl.ts.
import { runUtl } from '../utl';

void runUtl(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
