// eraftkv-utl: the offline tool for eraftkv data dirs, in etcdutl's conventions. It works on files
// only (a backup, a layout, data dirs) and never dials a node. runUtl never exits the process
// itself, so that tests can run it in process.
import yargs from 'yargs';
import { BackupFileError } from '@eraftkv/protocol';
import { DataDirError } from '@eraftkv/raft-server';
import { LayoutError, readRestoreLayout } from './restore-layout';
import { restoreCluster, RestoreError, type RestoreSummary } from './restore';

export const utlVersion = '0.1.0';

export interface UtlIo {
  out(text: string): void;
  err(text: string): void;
}

const processIo: UtlIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

/** 0 success, 1 an error (a damaged backup, a data dir in the way), 128 bad arguments. */
export const utlExitCodes = { success: 0, error: 1, badArgs: 128 } as const;

const restoreHelp = `Builds the data dirs of a new cluster from a backup (eraftkv-ctl snapshot save): one for every
node of --layout, meta and kv. Start each node afterwards on its data dir with the new
--cluster-id (its --peers may be left empty: the data dir holds its group's membership); the
cluster comes up with the backup's slot map and every key of the backup, as a new cluster.

The layout (YAML or JSON; a relative data-dir is taken from the layout file's directory):

  cluster-id: eraftkv-restored
  meta:
    - { id: 1, address: "meta-1.example:8088", data-dir: /var/lib/eraftkv/meta-1 }
    - { id: 2, address: "meta-2.example:8088", data-dir: /var/lib/eraftkv/meta-2 }
    - { id: 3, address: "meta-3.example:8088", data-dir: /var/lib/eraftkv/meta-3 }
  kv:
    - { group: 1, id: 1, address: "kv-1-1.example:7088", data-dir: /var/lib/eraftkv/kv-1-1 }
    - ...

It needs one layout group per kv group of the backup, with the same ids. Nothing is written
until the whole backup has been checked (a damaged one is refused with the offset of the first
bad record), and no data dir appears until every one is complete. Existing, non-empty data dirs
are refused. Every run draws new incarnations: the data dirs of one run form one cluster, and
are never mixed with those of another run or of the old cluster. For nodes on several machines,
restore on one and copy each data dir to its machine (rsync -a, or tar).`;

export async function runUtl(argv: readonly string[], io: UtlIo = processIo): Promise<number> {
  let exitCode: number = utlExitCodes.success;
  const parser = yargs([...argv])
    .scriptName('eraftkv-utl')
    .usage('$0 <command>\n\nThe offline tool for eraftkv data dirs (it never dials a node).')
    .command(
      'snapshot',
      'Work with backups offline: restore',
      (y) =>
        y
          .command(
            'restore <file>',
            'Build the data dirs of a new cluster from a backup',
            (yy) =>
              yy
                .usage(
                  `$0 snapshot restore <file> --layout <layout> [--cluster-id <id>]\n\n${restoreHelp}`,
                )
                .positional('file', { type: 'string', demandOption: true, describe: 'the backup' })
                .option('layout', {
                  type: 'string',
                  demandOption: true,
                  describe: 'the new cluster: its nodes, their addresses and data dirs (above)',
                })
                .option('cluster-id', {
                  type: 'string',
                  describe: "the new cluster's id (default: the layout's cluster-id)",
                })
                .option('write-out', {
                  alias: 'w',
                  choices: ['simple', 'json'] as const,
                  default: 'simple' as const,
                  describe: 'the format of the summary',
                })
                .example('$0 snapshot restore backup.ekv --layout restored.yaml', ''),
            async (args) => {
              exitCode = await restore(
                io,
                String(args.file),
                String(args.layout),
                args.clusterId,
                args.writeOut === 'json',
              );
            },
          )
          .demandCommand(1, 'snapshot needs a subcommand: restore'),
      () => {},
    )
    .demandCommand(1, 'a command is needed (eraftkv-utl --help)')
    .strict()
    .version(utlVersion)
    .help()
    .wrap(Math.min(100, process.stdout.columns ?? 100))
    .exitProcess(false)
    .fail((message, err) => {
      if (err) throw err;
      io.err(`Error: ${message}\n`);
      exitCode = utlExitCodes.badArgs;
    });
  try {
    await parser.parseAsync();
  } catch (err) {
    io.err(`Error: ${(err as Error).message}\n`);
    return utlExitCodes.error;
  }
  return exitCode;
}

async function restore(
  io: UtlIo,
  backup: string,
  layoutPath: string,
  clusterIdFlag: string | undefined,
  json: boolean,
): Promise<number> {
  try {
    const layout = await readRestoreLayout(layoutPath);
    const clusterId = clusterIdFlag ?? layout.clusterId;
    if (clusterId === null || clusterId === '') {
      io.err(
        `Error: the new cluster needs an id: give --cluster-id or cluster-id in --layout ${layoutPath}\n`,
      );
      return utlExitCodes.badArgs;
    }
    const summary = await restoreCluster({
      backup,
      layout,
      layoutPath,
      clusterId,
      progress: (line) => io.err(`${line}\n`),
    });
    if (summary.backupClusterId === clusterId)
      io.err(
        `warning: the restored cluster keeps the backed-up cluster's id "${clusterId}"; nodes of the old cluster are told apart only by their incarnations\n`,
      );
    io.out(json ? `${JSON.stringify(summaryJson(summary))}\n` : describe(summary));
    return utlExitCodes.success;
  } catch (err) {
    if (
      err instanceof LayoutError ||
      err instanceof RestoreError ||
      err instanceof BackupFileError ||
      err instanceof DataDirError
    ) {
      io.err(`Error: ${err.message}\nNothing was restored.\n`);
      return utlExitCodes.error;
    }
    throw err;
  }
}

function summaryJson(s: RestoreSummary): Record<string, unknown> {
  return {
    clusterId: s.clusterId,
    backupClusterId: s.backupClusterId,
    slotCount: s.slotCount,
    configVersion: s.configVersion,
    groups: s.groups,
    keys: s.keys,
    bytes: s.bytes,
    seconds: Number(s.seconds.toFixed(3)),
    keysPerSecond: Math.round(s.keys / s.seconds),
    mibPerSecond: Number((s.backupBytes / 1024 / 1024 / s.seconds).toFixed(2)),
    dataDirs: s.nodes.map((n) => ({ kind: n.kind, group: n.group, id: n.id, dataDir: n.dataDir })),
  };
}

function describe(s: RestoreSummary): string {
  const lines = [
    `Restored cluster "${s.clusterId}" (from a backup of "${s.backupClusterId}"): ${s.slotCount} slots, ` +
      `${s.groups.length} kv group${s.groups.length === 1 ? '' : 's'}, ${s.keys} keys, ` +
      `${s.nodes.length} data dirs in ${s.seconds.toFixed(2)} s ` +
      `(${Math.round(s.keys / s.seconds)} keys/s, ${(s.backupBytes / 1024 / 1024 / s.seconds).toFixed(2)} MiB/s of backup)`,
    ...s.groups.map((g) => `  group ${g.group}: ${g.keys} keys on ${g.nodes} nodes`),
    'Start every node on its data dir with the same --cluster-id, for example:',
    ...s.nodes.map((n) =>
      n.kind === 'meta'
        ? `  eraftkv-meta --cluster-id ${s.clusterId} --id ${n.id} --listen ${n.address} --data-dir ${n.dataDir}`
        : `  eraftkv-kv --cluster-id ${s.clusterId} --group ${n.group} --id ${n.id} --listen ${n.address} --data-dir ${n.dataDir} --meta <meta addresses>`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}
