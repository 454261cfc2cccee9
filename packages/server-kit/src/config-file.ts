// --config-file: a YAML (or JSON, which YAML reads too) file with the same keys as the flags of a
// server binary, e.g.
//
//   data-dir: /data
//   listen: 0.0.0.0:7088
//   tick-ms: 100
//
// yargs applies it below the command line and the ERAFTKV_* environment and above the defaults.
// Unlike yargs' own loader this one refuses what it does not know: an unknown key, a value of the
// wrong type or a nested map is an error that names the key and the file, because a key that is
// silently ignored (a typo, a flag of the other binary) is a setting the operator believes in and
// the node does not have.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';

/** The part of a yargs option definition the loader needs. */
export interface ConfigOptionSpec {
  readonly type: 'string' | 'number' | 'boolean';
  readonly choices?: readonly string[];
}

/** The key of the flag itself: a file that names another file is refused. */
export const configFileFlag = 'config-file';

/** The largest config file read (a node's settings fit in a few KiB). */
export const configFileBytesMax = 1024 * 1024;

type ConfigValue = string | number | boolean;

/**
 * Reads and checks a config file against `options` (the binary's flags, by their dashed names).
 * Returns the values by flag name; throws an Error naming the file and, when one is at fault, the
 * key.
 */
export function loadConfigFile(
  path: string,
  options: Readonly<Record<string, ConfigOptionSpec>>,
): Record<string, ConfigValue> {
  let text: string;
  try {
    const bytes = readFileSync(path);
    if (bytes.length > configFileBytesMax)
      throw new Error(`it is ${bytes.length} bytes, more than ${configFileBytesMax}`);
    text = bytes.toString('utf8');
  } catch (err) {
    throw new Error(`--config-file ${path}: cannot be read: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, { uniqueKeys: true });
  } catch (err) {
    const first = (err as Error).message.split('\n')[0];
    throw new Error(`--config-file ${path}: not valid YAML or JSON: ${first}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc))
    throw new Error(`--config-file ${path}: must be a map of flag names to values`);
  const out: Record<string, ConfigValue> = {};
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    const at = `--config-file ${path}: key "${key}"`;
    if (key === configFileFlag) throw new Error(`${at}: a config file cannot name another one`);
    const spec = Object.hasOwn(options, key) ? options[key] : undefined;
    if (spec === undefined) {
      const dashed = key.replace(/[A-Z_]/g, (c) => `-${c === '_' ? '' : c.toLowerCase()}`);
      const hint = Object.hasOwn(options, dashed) ? ` (did you mean "${dashed}"?)` : '';
      throw new Error(
        `${at} is not a flag of this server${hint}; the keys are the flag names without the dashes, as listed by --help`,
      );
    }
    out[key] = configValue(at, spec, value);
  }
  return out;
}

/** One value checked against the type of its flag (a number in a string flag becomes text). */
function configValue(at: string, spec: ConfigOptionSpec, value: unknown): ConfigValue {
  switch (spec.type) {
    case 'boolean':
      if (typeof value !== 'boolean') throw new Error(`${at} must be true or false`);
      return value;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value))
        throw new Error(`${at} must be a number`);
      return value;
    case 'string': {
      if (typeof value !== 'string' && typeof value !== 'number')
        throw new Error(`${at} must be a string`);
      const text = String(value);
      if (spec.choices !== undefined && !spec.choices.includes(text))
        throw new Error(`${at} must be one of ${spec.choices.join(', ')}, not "${text}"`);
      return text;
    }
  }
}
