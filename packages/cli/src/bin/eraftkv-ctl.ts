// eraftkv-ctl: not built yet; see the README for what works today.
process.stderr.write('eraftkv-ctl is not implemented yet\n');
process.exitCode = 1;
