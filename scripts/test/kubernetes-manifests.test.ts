// deploy/kubernetes and the Dockerfile against the real command lines. No Kubernetes cluster and
// no Docker engine are needed: each pod's shell command runs here under `sh` with the environment
// Kubernetes would give it (the downward API, the mounted ConfigMaps) and with stand-ins for the
// binaries that record their arguments; those arguments then go through the binaries' own parsers
// (eraftkv-meta's and eraftkv-kv's, with the mounted config file), so that a flag, a config key, a
// port or an address that the binaries would refuse or that disagrees with the manifests fails
// here. The init Jobs run for real, twice, against a real one-node meta group.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { runCtl } from '@eraftkv/cli';
import { parseKvCommandLine } from '@eraftkv/kv-server';
import { parseMetaArgs } from '@eraftkv/meta-server';

jest.setTimeout(120_000);

const repositoryDir = resolve(__dirname, '..', '..');
const deployDir = join(repositoryDir, 'deploy', 'kubernetes');
const dockerfilePath = join(repositoryDir, 'Dockerfile');
/** The namespace the pods are simulated in (any name works: the commands read it). */
const namespace = 'eraftkv-test';
/** At least this much between shutdown-grace-ms and the pod's termination grace period. */
const terminationMarginMs = 5000;

type Binary = 'eraftkv-meta' | 'eraftkv-kv' | 'eraftkv-ctl';
const serverBinaries = ['eraftkv-meta', 'eraftkv-kv'] as const;
type ServerBinary = (typeof serverBinaries)[number];

// ---- The parts of the Kubernetes objects read here ----

type Labels = Readonly<Record<string, string>>;

interface ObjectMeta {
  readonly name: string;
  readonly labels?: Labels;
  readonly annotations?: Labels;
}

interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: ObjectMeta;
}

interface EnvVar {
  readonly name: string;
  readonly value?: string;
  readonly valueFrom?: { readonly fieldRef?: { readonly fieldPath: string } };
}

interface Probe {
  readonly httpGet?: { readonly path: string; readonly port: number | string };
  readonly tcpSocket?: { readonly port: number | string };
  readonly grpc?: { readonly port: number };
  readonly exec?: { readonly command: readonly string[] };
}

interface Container {
  readonly name: string;
  readonly image: string;
  readonly command?: readonly string[];
  readonly args?: readonly string[];
  readonly env?: readonly EnvVar[];
  readonly ports?: readonly { readonly name?: string; readonly containerPort: number }[];
  readonly readinessProbe?: Probe;
  readonly livenessProbe?: Probe;
  readonly resources?: { readonly requests?: Labels; readonly limits?: Labels };
  readonly volumeMounts?: readonly { readonly name: string; readonly mountPath: string }[];
}

interface Volume {
  readonly name: string;
  readonly configMap?: { readonly name: string };
  readonly downwardAPI?: {
    readonly items: readonly { readonly path: string; readonly fieldRef: { fieldPath: string } }[];
  };
  readonly emptyDir?: object;
}

interface PodTemplate {
  readonly metadata: { readonly labels: Labels; readonly annotations?: Labels };
  readonly spec: {
    readonly containers: readonly Container[];
    readonly volumes?: readonly Volume[];
    readonly enableServiceLinks?: boolean;
    readonly terminationGracePeriodSeconds?: number;
    readonly securityContext?: {
      readonly runAsNonRoot?: boolean;
      readonly runAsUser?: number;
      readonly fsGroup?: number;
    };
  };
}

interface StatefulSet extends K8sObject {
  readonly spec: {
    readonly serviceName: string;
    readonly replicas: number;
    readonly podManagementPolicy?: string;
    readonly selector: { readonly matchLabels: Labels };
    readonly template: PodTemplate;
    readonly volumeClaimTemplates?: readonly { readonly metadata: { readonly name: string } }[];
  };
}

interface Service extends K8sObject {
  readonly spec: {
    readonly clusterIP?: string;
    readonly type?: string;
    readonly publishNotReadyAddresses?: boolean;
    readonly selector: Labels;
    readonly ports: readonly {
      readonly name?: string;
      readonly port: number;
      readonly targetPort?: number | string;
    }[];
  };
}

interface PodDisruptionBudget extends K8sObject {
  readonly spec: {
    readonly maxUnavailable?: number | string;
    readonly minAvailable?: number | string;
    readonly selector: { readonly matchLabels: Labels };
  };
}

interface Job extends K8sObject {
  readonly spec: { readonly template: PodTemplate };
}

interface Kustomization {
  readonly kind: string;
  readonly resources?: readonly string[];
  readonly components?: readonly string[];
  readonly configMapGenerator?: readonly {
    readonly name: string;
    readonly files?: readonly string[];
  }[];
}

/** A ConfigMap as kustomize generates it: file name -> content. */
interface GeneratedConfigMap {
  readonly name: string;
  readonly files: ReadonlyMap<string, string>;
}

// ---- Reading deploy/kubernetes ----

function yamlFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...yamlFilesUnder(path));
    else if (/\.ya?ml$/.test(entry.name)) out.push(path);
  }
  return out.sort();
}

/** Every document of a YAML file, as plain values; a syntax error or warning fails. */
function readYaml(path: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(path, 'utf8'));
  if (!Array.isArray(docs)) throw new Error(`${path}: not a YAML stream`);
  return docs.map((doc, i) => {
    const problems = [...doc.errors, ...doc.warnings].map((e) => e.message);
    if (problems.length > 0) throw new Error(`${path}, document ${i + 1}: ${problems.join('; ')}`);
    return doc.toJS() as unknown;
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function must<T>(value: T | undefined | null, what: string): T {
  if (value === undefined || value === null) throw new Error(`missing: ${what}`);
  return value;
}

const kustomizationDirs = yamlFilesUnder(deployDir)
  .filter((f) => basename(f) === 'kustomization.yaml')
  .map((f) => dirname(f));

function readKustomization(dir: string): Kustomization {
  const [doc] = readYaml(join(dir, 'kustomization.yaml'));
  if (!isObject(doc)) throw new Error(`${dir}/kustomization.yaml is not a map`);
  return doc as unknown as Kustomization;
}

/** Every object of every resource file that some kustomization lists (base and components). */
function loadObjects(): K8sObject[] {
  const objects: K8sObject[] = [];
  for (const dir of kustomizationDirs) {
    for (const resource of readKustomization(dir).resources ?? []) {
      const path = join(dir, resource);
      if (statSync(path).isDirectory()) continue;
      for (const doc of readYaml(path)) {
        if (doc === null) continue;
        if (!isObject(doc) || typeof doc.kind !== 'string' || !isObject(doc.metadata))
          throw new Error(`${relative(deployDir, path)}: a document without kind or metadata`);
        objects.push(doc as unknown as K8sObject);
      }
    }
  }
  return objects;
}

function loadGeneratedConfigMaps(): GeneratedConfigMap[] {
  return kustomizationDirs.flatMap((dir) =>
    (readKustomization(dir).configMapGenerator ?? []).map((generator) => ({
      name: generator.name,
      files: new Map(
        (generator.files ?? []).map((file) => {
          // kustomize's "key=path" form names the key; a bare path uses the file name.
          const [key, path] = file.includes('=') ? file.split('=', 2) : [basename(file), file];
          return [key, readFileSync(join(dir, path), 'utf8')] as const;
        }),
      ),
    })),
  );
}

const objects = loadObjects();
const configMaps = loadGeneratedConfigMaps();
const ofKind = <T extends K8sObject>(kind: string): T[] =>
  objects.filter((o) => o.kind === kind) as T[];
const statefulSets = ofKind<StatefulSet>('StatefulSet');
const services = ofKind<Service>('Service');
const budgets = ofKind<PodDisruptionBudget>('PodDisruptionBudget');
const jobs = ofKind<Job>('Job');

function selects(selector: Labels, labels: Labels): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

function onlyContainer(template: PodTemplate): Container {
  expect(template.spec.containers).toHaveLength(1);
  return template.spec.containers[0];
}

/** The shell script of a container whose command is `sh -c <script>`. */
function shellScript(container: Container): string {
  const command = [...(container.command ?? []), ...(container.args ?? [])];
  expect(command.slice(0, 2)).toEqual(['sh', '-c']);
  expect(command).toHaveLength(3);
  return command[2];
}

/** The binary a server container ends in (`exec eraftkv-meta` or `exec eraftkv-kv`). */
function serverBinaryOf(set: StatefulSet): ServerBinary {
  const script = shellScript(onlyContainer(set.spec.template));
  const found = serverBinaries.filter((b) => new RegExp(`\\bexec ${b}\\b`).test(script));
  expect(found).toHaveLength(1);
  return found[0];
}

/** A container port by number or name. */
function containerPort(container: Container, port: number | string): number {
  const found = (container.ports ?? []).find((p) =>
    typeof port === 'number' ? p.containerPort === port : p.name === port,
  );
  return must(found, `container port ${port} of ${container.name}`).containerPort;
}

function hostPort(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  expect(colon).toBeGreaterThan(0);
  return { host: address.slice(0, colon), port: Number(address.slice(colon + 1)) };
}

// ---- The binaries' --help, in process ----

/** Each flag of a --help text, and whether it takes a value (every type but boolean does). */
type FlagTable = ReadonlyMap<string, { readonly takesValue: boolean }>;

/**
 * The flags of a yargs --help text. An option starts a line ("  -w, --write-out  ...",
 * "      --listen  ..."); the lines of its description are indented further and may mention other
 * flags, which do not count.
 */
function flagsOfHelp(help: string): FlagTable {
  const flags = new Map<string, { takesValue: boolean }>();
  const optionLine = /^ {1,6}(?:-([A-Za-z]), )?--([a-z][a-z0-9-]*)(?=\s|$)/;
  const lines = help.split('\n');
  lines.forEach((line, i) => {
    const m = optionLine.exec(line);
    if (m === null) return;
    // Its entry: this line and the more indented lines after it.
    let entry = line;
    for (let j = i + 1; j < lines.length && /^ {7,}\S/.test(lines[j]); j++) entry += lines[j];
    const takesValue = !/\[boolean\]/.test(entry);
    const known = flags.get(m[2]);
    // Examples repeat flags without their types: the option's own entry decides.
    if (known === undefined || /\[(string|number|boolean|count|array)\]/.test(entry)) {
      flags.set(m[2], { takesValue });
      if (m[1] !== undefined) flags.set(m[1], { takesValue });
    }
  });
  return flags;
}

/** What console.log received while `work` ran (yargs prints --help there). */
async function consoleOutput(work: () => unknown): Promise<string> {
  const lines: string[] = [];
  const spy = jest.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
    lines.push(args.map(String).join(' '));
  });
  try {
    await work();
  } finally {
    spy.mockRestore();
  }
  return lines.join('\n');
}

function metaHelp(): string {
  const parsed = parseMetaArgs(['--help'], '0.0.0');
  if (parsed.kind !== 'exit' || parsed.code !== 0) throw new Error('eraftkv-meta --help failed');
  return parsed.output;
}

function kvHelp(): Promise<string> {
  return consoleOutput(() => {
    try {
      parseKvCommandLine(['--help'], { exitProcess: false, version: '0.0.0' });
    } catch {
      // After printing the help the parser goes on to check the (absent) required flags.
    }
  });
}

async function ctlHelp(command: readonly string[]): Promise<string> {
  const ignore = (): void => {};
  let code = -1;
  const help = await consoleOutput(async () => {
    code = await runCtl([...command, '--help'], { out: ignore, err: ignore });
  });
  expect(code).toBe(0);
  return help;
}

/** The flag names of an argv (`--name`, `--name=value`, `-w`), skipping the values. */
function flagsOfArgv(argv: readonly string[], table: FlagTable): string[] {
  const names: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const m = /^--?([^=]+)(=.*)?$/.exec(argv[i]);
    if (m === null) continue;
    names.push(m[1]);
    if (m[2] === undefined && table.get(m[1])?.takesValue !== false) i++;
  }
  return names;
}

/** The words of an argv that are not flags or their values (a ctl command and its arguments). */
function wordsOfArgv(argv: readonly string[], table: FlagTable): string[] {
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const m = /^--?([^=]+)(=.*)?$/.exec(argv[i]);
    if (m === null) words.push(argv[i]);
    else if (m[2] === undefined && table.get(m[1])?.takesValue !== false) i++;
  }
  return words;
}

// ---- Running a pod's command ----

/** Stand-ins for the server binaries: print their name and arguments, NUL-separated. */
async function writeServerStubs(dir: string): Promise<void> {
  for (const binary of serverBinaries) {
    const path = join(dir, binary);
    await writeFile(path, `#!/bin/sh\nprintf '%s\\0' "${binary}" "$@"\n`);
    await chmod(path, 0o755);
  }
}

interface ScriptRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function runShell(script: string, env: Readonly<Record<string, string>>): Promise<ScriptRun> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('sh', ['-c', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', reject);
    child.on('close', (code) =>
      resolvePromise({
        code: code ?? -1,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      }),
    );
  });
}

/** A pod as Kubernetes would make it from a template. */
interface SimulatedPod {
  readonly name: string;
  readonly annotations: Labels;
}

/** The container's environment as Kubernetes resolves it (values and the downward API). */
function podEnvironment(container: Container, pod: SimulatedPod): Record<string, string> {
  const env: Record<string, string> = {};
  for (const v of container.env ?? []) {
    const field = v.valueFrom?.fieldRef?.fieldPath;
    if (v.value !== undefined) env[v.name] = v.value;
    else if (field === 'metadata.name') env[v.name] = pod.name;
    else if (field === 'metadata.namespace') env[v.name] = namespace;
    else throw new Error(`env ${v.name} of ${container.name}: cannot simulate ${String(field)}`);
  }
  // The binaries would read these as flags; the pods must not set any.
  for (const name of Object.keys(env)) expect(name.startsWith('ERAFTKV_')).toBe(false);
  return { ...env, HOSTNAME: pod.name };
}

/**
 * Writes what the container's ConfigMap and downward API volumes would hold under `dir` and
 * returns the script with their mount paths pointing there.
 */
async function mountVolumes(
  template: PodTemplate,
  container: Container,
  pod: SimulatedPod,
  script: string,
  dir: string,
  claims: readonly string[],
): Promise<string> {
  for (const mount of container.volumeMounts ?? []) {
    // A volume from a claim template (the node's data) is a plain directory to the script.
    if (claims.includes(mount.name)) continue;
    const volume = must(
      template.spec.volumes?.find((v) => v.name === mount.name),
      `volume ${mount.name}`,
    );
    const target = join(dir, volume.name);
    if (volume.configMap !== undefined) {
      const name = volume.configMap.name;
      const map = must(
        configMaps.find((c) => c.name === name),
        `ConfigMap ${name}`,
      );
      await mkdir(target, { recursive: true });
      for (const [key, text] of map.files) await writeFile(join(target, key), text);
    } else if (volume.downwardAPI !== undefined) {
      await mkdir(target, { recursive: true });
      for (const item of volume.downwardAPI.items) {
        expect(item.fieldRef.fieldPath).toBe('metadata.annotations');
        const text = Object.entries(pod.annotations)
          .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
          .join('\n');
        await writeFile(join(target, item.path), `${text}\n`);
      }
    } else {
      continue;
    }
    script = script.split(mount.mountPath).join(target);
  }
  return script;
}

/** What a server pod's command ran: the binary and its arguments. */
interface ServerCommand {
  readonly binary: ServerBinary;
  readonly argv: readonly string[];
}

async function runServerPod(
  set: StatefulSet,
  ordinal: number,
  stubs: string,
  extraAnnotations: Labels = {},
): Promise<ServerCommand> {
  const template = set.spec.template;
  const container = onlyContainer(template);
  const pod: SimulatedPod = {
    name: `${set.metadata.name}-${ordinal}`,
    annotations: { ...template.metadata.annotations, ...extraAnnotations },
  };
  // Beside the stubs, in the directory the tests remove at the end.
  const dir = await mkdtemp(join(dirname(stubs), 'pod-'));
  const claims = (set.spec.volumeClaimTemplates ?? []).map((c) => c.metadata.name);
  const script = await mountVolumes(template, container, pod, shellScript(container), dir, claims);
  const run = await runShell(script, {
    ...podEnvironment(container, pod),
    PATH: `${stubs}:${process.env.PATH ?? '/usr/bin:/bin'}`,
  });
  if (run.code !== 0) throw new Error(`${pod.name}: exit ${run.code}: ${run.stderr}`);
  const [binary, ...argv] = run.stdout.split('\0').slice(0, -1);
  expect(serverBinaries).toContain(binary);
  return { binary: binary as ServerBinary, argv };
}

/** What a server makes of its command line (config file included), in both binaries' terms. */
interface NodeSettings {
  readonly id: number;
  readonly group: number;
  readonly listen: string;
  readonly advertise: string;
  readonly metricsListen: string;
  readonly metricsAdvertise: string;
  readonly peers: readonly { readonly id: number; readonly address: string }[];
  readonly meta: readonly string[];
  readonly dataDir: string;
  readonly shutdownGraceMs: number;
}

function parseServer(command: ServerCommand): NodeSettings {
  if (command.binary === 'eraftkv-meta') {
    const parsed = parseMetaArgs(command.argv, '0.0.0');
    if (parsed.kind === 'exit') throw new Error(`eraftkv-meta refuses: ${parsed.output}`);
    const a = parsed.args;
    return {
      id: a.id,
      group: 0,
      listen: a.listen,
      advertise: a.advertise,
      metricsListen: a.metricsListen,
      metricsAdvertise: a.metricsAdvertise,
      peers: a.peerList,
      meta: [],
      dataDir: a.dataDir,
      shutdownGraceMs: a.shutdownGraceMs,
    };
  }
  const { server, peers } = parseKvCommandLine(command.argv, {
    exitProcess: false,
    version: '0.0.0',
  });
  return {
    id: server.id,
    group: server.groupId,
    listen: server.listen,
    advertise: must(server.advertise, 'kv advertise'),
    metricsListen: must(server.metricsListen, 'kv metrics listen'),
    metricsAdvertise: must(server.metricsAdvertise, 'kv metrics advertise'),
    peers,
    meta: server.metaAddresses,
    dataDir: server.dataDir,
    shutdownGraceMs: must(server.shutdownGraceMs, 'kv shutdown grace'),
  };
}

/** The --advertise of each pod of a StatefulSet, pod 0 first. */
async function advertisedAddresses(set: StatefulSet, stubs: string): Promise<string[]> {
  const out: string[] = [];
  for (let ordinal = 0; ordinal < set.spec.replicas; ordinal++)
    out.push(parseServer(await runServerPod(set, ordinal, stubs)).advertise);
  return out;
}

function valueOf(argv: readonly string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  if (i >= 0) return argv[i + 1];
  return argv.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);
}

// ---- A real meta node and the init Jobs ----

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((r) => {
      const socket = createConnection({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        r(true);
      });
      socket.once('error', () => r(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A stand-in for eraftkv-ctl that logs its arguments (one JSON array a line) and runs the real,
 * built eraftkv-ctl with the same arguments, --endpoints pointed at the local meta node.
 */
const ctlStub = `#!/usr/bin/env node
const { appendFileSync } = require('node:fs');
const { spawnSync } = require('node:child_process');
const args = process.argv.slice(2);
appendFileSync(process.env.CTL_LOG, JSON.stringify(args) + '\\n');
const local = args.map((a, i) =>
  args[i - 1] === '--endpoints' ? process.env.CTL_ENDPOINTS
  : a.startsWith('--endpoints=') ? '--endpoints=' + process.env.CTL_ENDPOINTS
  : a);
const run = spawnSync(process.execPath, [process.env.CTL_BIN, ...local], { stdio: 'inherit' });
process.exit(run.status === null ? 1 : run.status);
`;

interface JobRun extends ScriptRun {
  /** The arguments of every eraftkv-ctl the Job ran, as it gave them. */
  readonly ctlCalls: readonly (readonly string[])[];
}

// ---- The tests ----

describe('deploy/kubernetes', () => {
  const savedEnv = new Map<string, string>();
  let stubs = '';
  let help: Record<ServerBinary, FlagTable>;
  let ctlGlobalFlags: FlagTable;

  beforeAll(async () => {
    // The binaries read ERAFTKV_* variables as flags: none from this process may leak in.
    for (const [name, value] of Object.entries(process.env)) {
      if (name.startsWith('ERAFTKV_') && value !== undefined) {
        savedEnv.set(name, value);
        delete process.env[name];
      }
    }
    stubs = join(await mkdtemp(join(tmpdir(), 'eraftkv-k8s-')), 'bin');
    await mkdir(stubs);
    await writeServerStubs(stubs);
    help = {
      'eraftkv-meta': flagsOfHelp(metaHelp()),
      'eraftkv-kv': flagsOfHelp(await kvHelp()),
    };
    ctlGlobalFlags = flagsOfHelp(await ctlHelp([]));
  });

  afterAll(async () => {
    for (const [name, value] of savedEnv) process.env[name] = value;
    if (stubs !== '') await rm(dirname(stubs), { recursive: true, force: true });
  });

  describe('the flags of the binaries, read from their --help', () => {
    it('are read from the option lines only, with their kinds', () => {
      const meta = help['eraftkv-meta'];
      for (const flag of ['id', 'listen', 'advertise', 'peers', 'data-dir', 'config-file'])
        expect(meta.has(flag)).toBe(true);
      expect(meta.get('enable-pprof')?.takesValue).toBe(false);
      expect(meta.get('metrics-listen')?.takesValue).toBe(true);
      // Flags of the other binary, and words that appear only inside descriptions, are not flags.
      expect(meta.has('group') || meta.has('meta') || meta.has('bogus')).toBe(false);
      expect(help['eraftkv-kv'].has('group') && help['eraftkv-kv'].has('meta')).toBe(true);
      expect(help['eraftkv-kv'].has('slot-move-batch-slots')).toBe(false);
      expect(ctlGlobalFlags.has('endpoints') && ctlGlobalFlags.has('w')).toBe(true);
      const sample = flagsOfHelp(
        '  -w, --write-out  output  [string]\n      --listen  bind;\n                must equal\n                --peers of it  [string]\n',
      );
      expect([...sample.keys()].sort()).toEqual(['listen', 'w', 'write-out']);
    });
  });

  describe('kustomizations', () => {
    it('exist for the base, the kv group 2 component and the overlay', () => {
      expect(kustomizationDirs.map((d) => relative(deployDir, d)).sort()).toEqual([
        'base',
        'components/kv-group-2',
        'overlays/two-kv-groups',
      ]);
    });

    it.each(kustomizationDirs.map((d) => [relative(deployDir, d), d]))(
      '%s lists every YAML file of its folder, and everything it lists exists',
      (_name, dir) => {
        const k = readKustomization(dir);
        expect(['Kustomization', 'Component']).toContain(k.kind);
        const listed = new Set<string>();
        for (const resource of k.resources ?? []) {
          const path = join(dir, resource);
          expect(existsSync(path)).toBe(true);
          if (statSync(path).isDirectory())
            expect(existsSync(join(path, 'kustomization.yaml'))).toBe(true);
          else listed.add(path);
        }
        for (const component of k.components ?? []) {
          const path = join(dir, component);
          expect(readKustomization(path).kind).toBe('Component');
        }
        for (const generator of k.configMapGenerator ?? []) {
          for (const file of generator.files ?? []) {
            const path = join(dir, file.includes('=') ? file.split('=', 2)[1] : file);
            expect(existsSync(path)).toBe(true);
            listed.add(path);
          }
        }
        const own = yamlFilesUnder(dir).filter((f) => basename(f) !== 'kustomization.yaml');
        expect(own.map((f) => relative(dir, f)).sort()).toEqual(
          [...listed].map((f) => relative(dir, f)).sort(),
        );
      },
    );

    it('hold every object once, each well formed', () => {
      const keys = objects.map((o) => `${o.kind}/${o.metadata.name}`);
      expect(new Set(keys).size).toBe(keys.length);
      expect(keys.sort()).toEqual(
        [
          'Job/eraftkv-init',
          'Job/eraftkv-kv-2-register',
          'PodDisruptionBudget/eraftkv-kv-1',
          'PodDisruptionBudget/eraftkv-kv-2',
          'PodDisruptionBudget/eraftkv-meta',
          'Service/eraftkv',
          'Service/eraftkv-kv-1',
          'Service/eraftkv-kv-2',
          'Service/eraftkv-meta',
          'StatefulSet/eraftkv-kv-1',
          'StatefulSet/eraftkv-kv-2',
          'StatefulSet/eraftkv-meta',
        ].sort(),
      );
      for (const o of objects) expect(typeof o.apiVersion).toBe('string');
      expect(configMaps.map((c) => c.name)).toEqual(['eraftkv-config']);
    });
  });

  describe('every pod', () => {
    const templates = [
      ...statefulSets.map((s) => [`StatefulSet ${s.metadata.name}`, s.spec.template] as const),
      ...jobs.map((j) => [`Job ${j.metadata.name}`, j.spec.template] as const),
    ];

    it.each(templates)(
      '%s: no service links, a non-root user, resource requests',
      (_name, template) => {
        // Kubernetes would put ERAFTKV_SERVICE_HOST, ERAFTKV_PORT... (the Service eraftkv's
        // docker-link variables) into the environment: the binaries would take them for flags.
        expect(template.spec.enableServiceLinks).toBe(false);
        expect(template.spec.securityContext?.runAsNonRoot).toBe(true);
        expect(template.spec.securityContext?.runAsUser).toBe(1000);
        const container = onlyContainer(template);
        expect(container.image).toBe('eraftkv');
        expect(container.resources?.requests?.cpu).toBeDefined();
        expect(container.resources?.requests?.memory).toBeDefined();
      },
    );
  });

  describe.each(statefulSets.map((s) => [s.metadata.name, s] as const))(
    'StatefulSet %s',
    (_n, set) => {
      const template = set.spec.template;
      const container = template.spec.containers[0];

      it('runs three members started together, with a data volume and the node group of 1000', () => {
        expect(template.spec.containers).toHaveLength(1);
        expect(set.spec.replicas).toBe(3);
        expect(set.spec.podManagementPolicy).toBe('Parallel');
        expect(template.spec.securityContext?.fsGroup).toBe(1000);
        const claims = (set.spec.volumeClaimTemplates ?? []).map((c) => c.metadata.name);
        expect(claims).toEqual(['data']);
        expect(container.volumeMounts?.find((m) => m.name === 'data')?.mountPath).toBe('/data');
      });

      it('gives node ids 1, 2, 3 to pods 0, 1, 2 and each the same --peers, with itself at its --advertise', async () => {
        const binary = serverBinaryOf(set);
        const nodes: NodeSettings[] = [];
        for (let ordinal = 0; ordinal < set.spec.replicas; ordinal++) {
          const command = await runServerPod(set, ordinal, stubs);
          expect(command.binary).toBe(binary);
          const node = parseServer(command);
          expect(node.id).toBe(ordinal + 1);
          // The pod's stable name through its StatefulSet's headless Service.
          const host = `${set.metadata.name}-${ordinal}.${set.spec.serviceName}.${namespace}.svc.cluster.local`;
          expect(hostPort(node.advertise).host).toBe(host);
          expect(hostPort(node.metricsAdvertise).host).toBe(host);
          expect(node.peers.find((p) => p.id === node.id)?.address).toBe(node.advertise);
          nodes.push(node);
        }
        for (const node of nodes) expect(node.peers).toEqual(nodes[0].peers);
        expect(nodes[0].peers.map((p) => [p.id, p.address])).toEqual(
          nodes.map((n) => [n.id, n.advertise]),
        );
      });

      it('starts a pod beyond the first members, or one annotated to join, with an empty --peers', async () => {
        const beyond = parseServer(await runServerPod(set, set.spec.replicas, stubs));
        expect(beyond.id).toBe(set.spec.replicas + 1);
        expect(beyond.peers).toEqual([]);
        const joining = await runServerPod(set, 1, stubs, { 'eraftkv.io/join': 'existing' });
        expect(parseServer(joining).peers).toEqual([]);
        // Any other annotation value leaves --peers as it is.
        const other = await runServerPod(set, 1, stubs, { 'eraftkv.io/join': 'no' });
        expect(parseServer(other).peers).toHaveLength(set.spec.replicas);
      });

      it('passes only flags of its binary, and a config file whose keys are all flags of it', async () => {
        const command = await runServerPod(set, 0, stubs);
        const flags = help[command.binary];
        for (const flag of flagsOfArgv(command.argv, flags))
          expect([flag, flags.has(flag)]).toEqual([flag, true]);
        const configFile = must(valueOf(command.argv, '--config-file'), '--config-file');
        const doc: unknown = readYaml(configFile)[0];
        if (!isObject(doc)) throw new Error(`${configFile} is not a map`);
        const keys = Object.keys(doc);
        expect(keys.length).toBeGreaterThan(0);
        for (const key of keys) expect([key, flags.has(key)]).toEqual([key, true]);
      });

      it('opens the ports, probes and scrape annotations where the flags say the node listens', async () => {
        const node = parseServer(await runServerPod(set, 0, stubs));
        const grpcPort = hostPort(node.listen).port;
        const metricsPort = hostPort(node.metricsListen).port;
        // Bound on every interface of the pod, and told to others with the same ports.
        expect(hostPort(node.listen).host).toBe('0.0.0.0');
        expect(hostPort(node.metricsListen).host).toBe('0.0.0.0');
        expect(hostPort(node.advertise).port).toBe(grpcPort);
        expect(hostPort(node.metricsAdvertise).port).toBe(metricsPort);
        expect(containerPort(container, 'grpc')).toBe(grpcPort);
        expect(containerPort(container, 'metrics')).toBe(metricsPort);
        const ready = must(container.readinessProbe?.httpGet, 'readiness httpGet');
        expect(ready.path).toBe('/health');
        expect(containerPort(container, ready.port)).toBe(metricsPort);
        // Liveness must not hang on /health, which fails whenever the group has no leader.
        const live = must(container.livenessProbe?.httpGet, 'liveness httpGet');
        expect(live.path).toBe('/metrics');
        expect(containerPort(container, live.port)).toBe(metricsPort);
        const annotations = must(template.metadata.annotations, 'pod annotations');
        expect(annotations['prometheus.io/scrape']).toBe('true');
        expect(annotations['prometheus.io/port']).toBe(String(metricsPort));
        expect(annotations['prometheus.io/path']).toBe('/metrics');
        // The node's data on the volume, and time to stop gracefully before a SIGKILL.
        expect(node.dataDir.startsWith('/data/')).toBe(true);
        const graceMs = must(template.spec.terminationGracePeriodSeconds, 'grace period') * 1000;
        expect(graceMs).toBeGreaterThanOrEqual(node.shutdownGraceMs + terminationMarginMs);
      });

      it('is found through a headless Service that publishes pods before they are ready', () => {
        expect(selects(set.spec.selector.matchLabels, template.metadata.labels)).toBe(true);
        const service = must(
          services.find((s) => s.metadata.name === set.spec.serviceName),
          `Service ${set.spec.serviceName}`,
        );
        expect(service.spec.clusterIP).toBe('None');
        expect(service.spec.publishNotReadyAddresses).toBe(true);
        // Its pods and no other StatefulSet's.
        for (const other of statefulSets)
          expect(selects(service.spec.selector, other.spec.template.metadata.labels)).toBe(
            other === set,
          );
        for (const port of service.spec.ports)
          expect(containerPort(container, must(port.targetPort, 'targetPort'))).toBe(port.port);
      });

      it('has a PodDisruptionBudget of one that covers its pods only', () => {
        const mine = budgets.filter((b) =>
          selects(b.spec.selector.matchLabels, template.metadata.labels),
        );
        expect(mine).toHaveLength(1);
        expect(mine[0].spec.maxUnavailable).toBe(1);
        for (const other of statefulSets.filter((s) => s !== set))
          expect(
            selects(mine[0].spec.selector.matchLabels, other.spec.template.metadata.labels),
          ).toBe(false);
      });
    },
  );

  describe('the groups together', () => {
    const meta = must(
      statefulSets.find((s) => s.metadata.name === 'eraftkv-meta'),
      'StatefulSet eraftkv-meta',
    );
    const kvSets = statefulSets.filter((s) => s.metadata.name.startsWith('eraftkv-kv-'));

    it('names the binaries as intended: meta for the meta group, kv for kv groups 1 and 2', () => {
      expect(serverBinaryOf(meta)).toBe('eraftkv-meta');
      expect(kvSets.map((s) => s.metadata.name).sort()).toEqual(['eraftkv-kv-1', 'eraftkv-kv-2']);
      for (const set of kvSets) expect(serverBinaryOf(set)).toBe('eraftkv-kv');
    });

    it('tells every kv node the meta nodes at their advertised addresses, and its own group', async () => {
      const metaAddresses = await advertisedAddresses(meta, stubs);
      for (const set of kvSets) {
        const node = parseServer(await runServerPod(set, 0, stubs));
        expect(node.meta).toEqual(metaAddresses);
        expect(`eraftkv-kv-${node.group}`).toBe(set.metadata.name);
        expect(set.spec.template.metadata.labels['eraftkv.io/group']).toBe(String(node.group));
      }
    });

    it('reads every file of the ConfigMap as the config file of some server', async () => {
      const used = new Set<string>();
      for (const set of statefulSets) {
        const command = await runServerPod(set, 0, stubs);
        used.add(basename(must(valueOf(command.argv, '--config-file'), '--config-file')));
      }
      expect([...used].sort()).toEqual(configMaps.flatMap((c) => [...c.files.keys()]).sort());
    });

    it('puts the client Service eraftkv in front of the ready meta nodes gRPC port', async () => {
      const client = must(
        services.find((s) => s.metadata.name === 'eraftkv'),
        'Service eraftkv',
      );
      expect(client.spec.type ?? 'ClusterIP').toBe('ClusterIP');
      expect(client.spec.clusterIP).toBeUndefined();
      expect(client.spec.publishNotReadyAddresses).not.toBe(true);
      for (const set of statefulSets)
        expect(selects(client.spec.selector, set.spec.template.metadata.labels)).toBe(set === meta);
      const node = parseServer(await runServerPod(meta, 0, stubs));
      expect(client.spec.ports).toHaveLength(1);
      const [port] = client.spec.ports;
      const target = containerPort(
        onlyContainer(meta.spec.template),
        must(port.targetPort, 'targetPort'),
      );
      expect(target).toBe(hostPort(node.listen).port);
    });
  });

  describe('the init Jobs, run twice against a real one-node meta group', () => {
    const ctlBin = join(repositoryDir, 'packages/cli/bin/eraftkv-ctl.js');
    const metaBin = join(repositoryDir, 'packages/meta-server/bin/eraftkv-meta.js');
    let work = '';
    let port = 0;
    let metaNode: ReturnType<typeof spawn> | null = null;
    let metaLog = '';

    beforeAll(async () => {
      for (const built of ['packages/cli/dist', 'packages/meta-server/dist'])
        if (!existsSync(join(repositoryDir, built)))
          throw new Error(`${built} is missing: run npx tsc -b first`);
      work = await mkdtemp(join(tmpdir(), 'eraftkv-k8s-jobs-'));
      await writeFile(join(work, 'eraftkv-ctl'), ctlStub);
      await chmod(join(work, 'eraftkv-ctl'), 0o755);
      port = await freePort();
      const address = `127.0.0.1:${port}`;
      const env = { ...process.env };
      for (const name of Object.keys(env)) if (name.startsWith('ERAFTKV_')) delete env[name];
      metaNode = spawn(
        process.execPath,
        [
          metaBin,
          ...['--id', '1', '--listen', address, '--peers', `1=${address}`],
          ...['--data-dir', join(work, 'meta-1'), '--tick-ms', '20'],
        ],
        { env, stdio: ['ignore', 'ignore', 'pipe'] },
      );
      metaNode.stderr?.on('data', (chunk: Buffer) => {
        metaLog += chunk.toString('utf8');
      });
      await waitForPort(port, 20_000);
    });

    afterAll(async () => {
      if (metaNode !== null && metaNode.exitCode === null) {
        const exited = new Promise((r) => metaNode?.once('exit', r));
        metaNode.kill('SIGTERM');
        await exited;
      }
      if (work !== '') await rm(work, { recursive: true, force: true });
    });

    async function runJob(name: string, log: string): Promise<JobRun> {
      const job = must(
        jobs.find((j) => j.metadata.name === name),
        `Job ${name}`,
      );
      const container = onlyContainer(job.spec.template);
      const pod: SimulatedPod = { name: `${name}-abcde`, annotations: {} };
      const logPath = join(work, log);
      await writeFile(logPath, '');
      const run = await runShell(shellScript(container), {
        ...podEnvironment(container, pod),
        PATH: `${work}:${dirname(process.execPath)}:${process.env.PATH ?? '/usr/bin:/bin'}`,
        CTL_LOG: logPath,
        CTL_ENDPOINTS: `127.0.0.1:${port}`,
        CTL_BIN: ctlBin,
      });
      const ctlCalls = (await readFile(logPath, 'utf8'))
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as string[]);
      return { ...run, ctlCalls };
    }

    /** The topology, through the real eraftkv-ctl. */
    async function groupList(): Promise<{
      configVersion: number;
      slotCount: number;
      groups: { id: number; servers: { id: number; address: string }[]; slotCount: number }[];
    }> {
      const ignore = (): void => {};
      let out = '';
      const code = await runCtl(
        ['--endpoints', `127.0.0.1:${port}`, 'group', 'list', '-w', 'json'],
        { out: (t) => (out += t), err: ignore },
      );
      expect(code).toBe(0);
      return JSON.parse(out) as Awaited<ReturnType<typeof groupList>>;
    }

    async function expectKnownFlags(calls: readonly (readonly string[])[]): Promise<void> {
      expect(calls.length).toBeGreaterThan(0);
      for (const call of calls) {
        const words = wordsOfArgv(call, ctlGlobalFlags);
        const table = flagsOfHelp(await ctlHelp(words));
        for (const flag of flagsOfArgv(call, table))
          expect([words.join(' '), flag, table.has(flag)]).toEqual([words.join(' '), flag, true]);
      }
    }

    function kvAdvertised(setName: string): Promise<string[]> {
      const set = must(
        statefulSets.find((s) => s.metadata.name === setName),
        `StatefulSet ${setName}`,
      );
      return advertisedAddresses(set, stubs);
    }

    it('eraftkv-init initialises the cluster, registers kv group 1 and gives it every slot, once', async () => {
      const first = await runJob('eraftkv-init', 'init-1.log');
      if (first.code !== 0) throw new Error(`${first.stderr}\n${first.stdout}\nmeta: ${metaLog}`);
      await expectKnownFlags(first.ctlCalls);
      const metaSet = must(
        statefulSets.find((s) => s.metadata.name === 'eraftkv-meta'),
        'eraftkv-meta',
      );
      const metaAddresses = await advertisedAddresses(metaSet, stubs);
      for (const call of first.ctlCalls)
        expect(valueOf(call, '--endpoints')?.split(',')).toEqual(metaAddresses);
      const commands = first.ctlCalls.map((c) =>
        wordsOfArgv(c, ctlGlobalFlags).slice(0, 2).join(' '),
      );
      expect(commands).toContain('init');
      expect(commands).toContain('slot move');

      const kv1 = await kvAdvertised('eraftkv-kv-1');
      const after = await groupList();
      expect(after.slotCount).toBe(1024);
      const group1 = must(
        after.groups.find((g) => g.id === 1),
        'group 1',
      );
      expect(group1.servers).toEqual(kv1.map((address, i) => ({ id: i + 1, address })));
      expect(group1.slotCount).toBe(1024);

      // A second run finds everything done and changes nothing.
      const second = await runJob('eraftkv-init', 'init-2.log');
      if (second.code !== 0) throw new Error(`${second.stderr}\n${second.stdout}`);
      expect(second.stdout).toMatch(/done by an earlier run: .*already initialized/);
      expect(second.stdout).toMatch(/done by an earlier run: .*already exists/);
      const secondCommands = second.ctlCalls.map((c) =>
        wordsOfArgv(c, ctlGlobalFlags).slice(0, 2).join(' '),
      );
      expect(secondCommands).not.toContain('slot move');
      expect((await groupList()).configVersion).toBe(after.configVersion);
    });

    // After eraftkv-init (it waits for an initialised cluster).
    it('eraftkv-kv-2-register registers kv group 2 without slots, once', async () => {
      const first = await runJob('eraftkv-kv-2-register', 'register-1.log');
      if (first.code !== 0) throw new Error(`${first.stderr}\n${first.stdout}`);
      await expectKnownFlags(first.ctlCalls);
      const view = await groupList();
      const group2 = must(
        view.groups.find((g) => g.id === 2),
        'group 2',
      );
      const kv2 = await kvAdvertised('eraftkv-kv-2');
      expect(group2.servers).toEqual(kv2.map((address, i) => ({ id: i + 1, address })));
      expect(group2.slotCount).toBe(0);
      const second = await runJob('eraftkv-kv-2-register', 'register-2.log');
      if (second.code !== 0) throw new Error(`${second.stderr}\n${second.stdout}`);
      expect(second.stdout).toMatch(/done by an earlier run: .*already exists/);
      expect((await groupList()).configVersion).toBe(view.configVersion);
    });
  });
});

// ---- The Dockerfile ----

/** The Dockerfile's instructions, continuation lines joined, comments dropped. */
function dockerInstructions(): { keyword: string; args: string }[] {
  const joined = readFileSync(dockerfilePath, 'utf8')
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const space = line.search(/\s/);
      return {
        keyword: (space < 0 ? line : line.slice(0, space)).toUpperCase(),
        args: space < 0 ? '' : line.slice(space + 1).trim(),
      };
    });
}

/** The words of a Dockerfile list: JSON ["a", "b"] or a plain "a b". */
function dockerList(args: string): string[] {
  return args.startsWith('[') ? (JSON.parse(args) as string[]) : args.split(/\s+/);
}

describe('Dockerfile', () => {
  const instructions = dockerInstructions();
  const froms = instructions.filter((i) => i.keyword === 'FROM');
  const lastFrom = instructions.lastIndexOf(froms[froms.length - 1]);
  const runtime = instructions.slice(lastFrom);

  it('builds in one stage and runs from a second one on node:20-bookworm-slim', () => {
    expect(froms.length).toBeGreaterThanOrEqual(2);
    expect(froms[0].args).toMatch(/\sAS\s+build$/i);
    const args = new Map(
      instructions
        .filter((i) => i.keyword === 'ARG' && i.args.includes('='))
        .map((i) => i.args.split('=', 2) as [string, string]),
    );
    for (const from of froms) {
      const image = from.args
        .split(/\s+/)[0]
        .replace(/^\$\{(\w+)\}$/, (_m, name: string) => must(args.get(name), `ARG ${name}`));
      expect(image).toBe('node:20-bookworm-slim');
    }
    expect(runtime.some((i) => i.keyword === 'COPY' && /--from=build/.test(i.args))).toBe(true);
  });

  it('runs as the user the pods run as, not root', () => {
    const users = runtime.filter((i) => i.keyword === 'USER');
    expect(users).toHaveLength(1);
    const uid = users[0].args.split(':')[0];
    expect(['root', '0']).not.toContain(uid);
    for (const set of statefulSets)
      expect(set.spec.template.spec.securityContext?.runAsUser).toBe(Number(uid));
  });

  it('keeps /data on a volume and exposes every port the StatefulSets open', () => {
    const volumes = runtime
      .filter((i) => i.keyword === 'VOLUME')
      .flatMap((i) => dockerList(i.args));
    expect(volumes).toContain('/data');
    const exposed = runtime
      .filter((i) => i.keyword === 'EXPOSE')
      .flatMap((i) => i.args.split(/\s+/))
      .map((p) => Number(p.replace(/\/tcp$/, '')));
    const opened = statefulSets.flatMap(
      (s) => onlyContainer(s.spec.template).ports?.map((p) => p.containerPort) ?? [],
    );
    expect(opened.length).toBeGreaterThan(0);
    for (const port of opened) expect(exposed).toContain(port);
  });

  it('puts every binary the manifests run on PATH, linked to its bin file', () => {
    const run = runtime
      .filter((i) => i.keyword === 'RUN')
      .map((i) => i.args)
      .join('\n');
    const scripts = [
      ...statefulSets.map((s) => s.spec.template),
      ...jobs.map((j) => j.spec.template),
    ]
      .map((t) => shellScript(onlyContainer(t)))
      .join('\n');
    const used = new Set<Binary>(
      (['eraftkv-meta', 'eraftkv-kv', 'eraftkv-ctl'] as const).filter((b) =>
        new RegExp(`\\b${b}\\b`).test(scripts),
      ),
    );
    expect(used.size).toBe(3);
    for (const binary of used) {
      const link = new RegExp(`ln -s /app/(\\S+) /usr/local/bin/${binary}(\\s|$)`).exec(run);
      const target = must(link?.[1], `a link of ${binary} into /usr/local/bin`);
      expect(existsSync(join(repositoryDir, target))).toBe(true);
      expect(target).toMatch(new RegExp(`/bin/${binary}\\.js$`));
    }
  });

  it('leaves installs, builds and local data out of the build context', () => {
    const ignored = readFileSync(join(repositoryDir, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    for (const entry of ['**/node_modules', '**/dist', 'data', '.git'])
      expect(ignored).toContain(entry);
  });
});

// ---- What kustomize itself makes of it, where kubectl is installed ----

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
const haveKubectl = kubectl.status === 0;

describe('kubectl kustomize', () => {
  (haveKubectl ? it : it.skip).each(['base', 'overlays/two-kv-groups'])(
    'renders %s with the generated ConfigMap and the tagged image in every pod',
    (dir) => {
      const rendered = spawnSync('kubectl', ['kustomize', join(deployDir, dir)], {
        encoding: 'utf8',
      });
      expect([rendered.status, rendered.stderr]).toEqual([0, rendered.stderr]);
      const docs = parseAllDocuments(rendered.stdout);
      if (!Array.isArray(docs)) throw new Error('kubectl kustomize printed no YAML stream');
      const out = docs.map((d) => d.toJS() as K8sObject);
      const configMapNames = out.filter((o) => o.kind === 'ConfigMap').map((o) => o.metadata.name);
      expect(configMapNames).toHaveLength(1);
      expect(configMapNames[0]).toMatch(/^eraftkv-config-[a-z0-9]+$/);
      const templates = out.flatMap((o) =>
        o.kind === 'StatefulSet'
          ? [(o as StatefulSet).spec.template]
          : o.kind === 'Job'
            ? [(o as Job).spec.template]
            : [],
      );
      expect(templates.length).toBe(dir === 'base' ? 3 : 5);
      for (const t of templates) {
        expect(onlyContainer(t).image).toBe('eraftkv:0.1.0');
        for (const v of t.spec.volumes ?? [])
          if (v.configMap !== undefined) expect(v.configMap.name).toBe(configMapNames[0]);
      }
    },
  );
});
