// The environment convention of every eraftkv binary: ERAFTKV_<FLAG> sets --<flag>
// (ERAFTKV_DATA_DIR sets --data-dir). yargs' .env('ERAFTKV') reads every ERAFTKV_* variable as a
// flag, and a strict parser then refuses the ones it does not know, so an environment that merely
// contains such a name would stop the process: Kubernetes, for one, gives every pod
// ERAFTKV_SERVICE_HOST, ERAFTKV_PORT... when a Service is named eraftkv. Like etcd with ETCD_*,
// the binaries ignore variables that name no flag of theirs and warn about them.

/** The ERAFTKV_* name of a flag. */
export function environmentName(flag: string): string {
  return `ERAFTKV_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/**
 * Takes out of `env` the ERAFTKV_* variables that name none of `flags`, for as long as a parser
 * reads it: returns their names (sorted, to warn about) and a function that puts them back.
 */
export function hideUnknownEnvironment(
  flags: Iterable<string>,
  env: NodeJS.ProcessEnv = process.env,
): { readonly ignored: string[]; readonly restore: () => void } {
  const known = new Set([...flags].map(environmentName));
  const hidden = new Map<string, string>();
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('ERAFTKV_') || known.has(name) || value === undefined) continue;
    hidden.set(name, value);
    delete env[name];
  }
  return {
    ignored: [...hidden.keys()].sort(),
    restore: () => {
      for (const [name, value] of hidden) env[name] = value;
    },
  };
}

/** The warning about ignored variables ('' when there are none). */
export function ignoredEnvironmentWarning(ignored: readonly string[]): string {
  if (ignored.length === 0) return '';
  return `ignoring ${ignored.join(', ')}: no flag of this name (ERAFTKV_<FLAG> sets --<flag>)`;
}
