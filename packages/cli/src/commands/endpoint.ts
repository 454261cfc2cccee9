// endpoint status / endpoint health: per node, as etcdctl shows them. With --cluster, every node
// of every group (found through the topology); otherwise the --endpoints.
import type { Argv } from 'yargs';
import { formatSlotRanges, judgeDigests, type StatusResp } from '@eraftkv/protocol';
import type { Context, Runner } from '../context';
import { exitCodes } from '../exit-codes';
import { json, renderTable } from '../output';
import { parseDuration } from '../context';

async function targets(ctx: Context, cluster: boolean): Promise<string[]> {
  if (!cluster) return ctx.endpoints;
  const view = await ctx.client().cluster({ serializable: true });
  const addresses = new Set<string>(ctx.endpoints);
  for (const g of view.groups) for (const s of g.servers) addresses.add(s.address);
  return [...addresses];
}

function sizeText(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} kB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export function endpointCommands(yargs: Argv, run: Runner): Argv {
  return yargs.command(
    'endpoint',
    'Check nodes: status, health',
    (y) =>
      y
        .command(
          'status',
          "Show each node's group, role, term, indexes and size",
          (yy) =>
            yy
              .option('cluster', {
                type: 'boolean',
                default: false,
                describe: 'every node of every group, not only --endpoints',
              })
              .option('slots', {
                type: 'boolean',
                default: false,
                describe:
                  'also list the slots each kv node holds keys for (one index seek per slot): after a move, the source lists none of the moved slots once it has dropped them',
              })
              .example('$0 endpoint status --cluster -w table', '')
              .example('$0 endpoint status --cluster --slots -w table', ''),
          run(async (ctx, args) => {
            const addresses = await targets(ctx, args.cluster === true);
            const slots = args.slots === true;
            const results = await Promise.all(
              addresses.map(async (address) => {
                try {
                  const status = await ctx.client().status(address, { withSlots: slots });
                  return { address, status, error: null };
                } catch (err) {
                  return {
                    address,
                    status: null as StatusResp | null,
                    error: (err as Error).message,
                  };
                }
              }),
            );
            if (ctx.writeOut === 'json') {
              ctx.io.out(
                json(
                  results.map((r) =>
                    r.status
                      ? { endpoint: r.address, ...r.status }
                      : { endpoint: r.address, error: r.error },
                  ),
                ),
              );
            } else {
              const rows = results.map((r) => {
                const s = r.status;
                if (s === null) {
                  const blank = slots ? ['', ''] : [''];
                  return [
                    r.address,
                    'unreachable',
                    '',
                    '',
                    '',
                    '',
                    '',
                    '',
                    ...blank,
                    r.error ?? '',
                  ];
                }
                const held =
                  s.serverType === 'meta' ? '-' : formatSlotRanges(s.slotsWithKeys) || 'none';
                return [
                  r.address,
                  s.serverType === 'meta' ? 'meta' : `kv ${s.groupId}`,
                  String(s.nodeId),
                  s.isLearner ? 'learner' : s.role,
                  String(s.term),
                  String(s.leaderId),
                  String(s.commitIndex),
                  String(s.appliedIndex),
                  sizeText(s.dbSizeBytes),
                  ...(slots ? [held] : []),
                  s.version,
                ];
              });
              const header = [
                'ENDPOINT',
                'GROUP',
                'ID',
                'ROLE',
                'TERM',
                'LEADER',
                'COMMIT',
                'APPLIED',
                'DB SIZE',
                ...(slots ? ['SLOTS WITH KEYS'] : []),
                'VERSION',
              ];
              if (ctx.writeOut === 'table') ctx.io.out(renderTable(header, rows));
              else for (const row of rows) ctx.io.out(`${row.join(', ')}\n`);
            }
            return results.some((r) => r.status === null)
              ? exitCodes.badConnection
              : exitCodes.success;
          }),
        )
        .command(
          'health',
          'Check that each node is serving (grpc.health.v1)',
          (yy) =>
            yy
              .option('cluster', {
                type: 'boolean',
                default: false,
                describe: 'every node of every group, not only --endpoints',
              })
              .example('$0 endpoint health --cluster', ''),
          run(async (ctx, args) => {
            const addresses = await targets(ctx, args.cluster === true);
            const results = await Promise.all(
              addresses.map(async (address) => {
                const started = Date.now();
                try {
                  const healthy = await ctx.client().health(address);
                  return {
                    endpoint: address,
                    health: healthy,
                    took: `${Date.now() - started}ms`,
                    error: healthy ? '' : 'not serving',
                  };
                } catch (err) {
                  return {
                    endpoint: address,
                    health: false,
                    took: `${Date.now() - started}ms`,
                    error: (err as Error).message,
                  };
                }
              }),
            );
            if (ctx.writeOut === 'json') ctx.io.out(json(results));
            else if (ctx.writeOut === 'table') {
              ctx.io.out(
                renderTable(
                  ['ENDPOINT', 'HEALTH', 'TOOK', 'ERROR'],
                  results.map((r) => [r.endpoint, String(r.health), r.took, r.error]),
                ),
              );
            } else {
              for (const r of results) {
                ctx.io.out(
                  r.health
                    ? `${r.endpoint} is healthy: took = ${r.took}\n`
                    : `${r.endpoint} is unhealthy: ${r.error}\n`,
                );
              }
            }
            return results.every((r) => r.health) ? exitCodes.success : exitCodes.error;
          }),
        )
        .command(
          'hashkv',
          "Check that every replica of each kv group holds the same data: the group's leader appends a check to its log, each replica digests its state at that index",
          (yy) =>
            yy
              .option('group', {
                type: 'number',
                describe: 'check this kv group only (default: every kv group)',
              })
              .option('cluster', {
                type: 'boolean',
                default: false,
                describe:
                  "etcdctl's flag; hashkv always covers every replica of the groups it checks",
              })
              .option('timeout', {
                type: 'string',
                default: '60s',
                describe: 'how long one group may take (every replica scans its whole state)',
              })
              .example('$0 endpoint hashkv -w table', '')
              .example('$0 endpoint hashkv --group 2', ''),
          run(async (ctx, args) => {
            const view = await ctx.client().cluster({ serializable: true });
            const groups =
              args.group === undefined
                ? view.groups.map((g) => g.id).filter((id) => id > 0)
                : [Number(args.group)];
            const timeoutMs = parseDuration(String(args.timeout), '--timeout');
            const rows: {
              group: number;
              endpoint: string;
              id: number;
              index: number;
              hash: string;
              error: string;
              agrees: boolean;
            }[] = [];
            const verdicts: string[] = [];
            let ok = true;
            for (const group of groups) {
              try {
                const check = await ctx.client().hashKv(group, { deadlineMs: timeoutMs });
                const verdict = judgeDigests(check.replicas);
                const majority = verdict.majority;
                const differ = [...verdict.differing, ...verdict.missing];
                if (differ.length > 0) ok = false;
                for (const r of check.replicas)
                  rows.push({
                    group,
                    endpoint: r.address,
                    id: r.nodeId,
                    index: check.index,
                    hash: r.digest,
                    error: r.error,
                    agrees: r.digest !== '' && r.digest === majority,
                  });
                verdicts.push(
                  differ.length === 0
                    ? `group ${group}: ${check.replicas.length} replicas agree at index ${check.index}`
                    : `group ${group}: REPLICAS DIFFER at index ${check.index}: ${differ.map((r) => `node ${r.nodeId}${r.digest === '' ? ` (no digest: ${r.error})` : ''}`).join(', ')}`,
                );
              } catch (err) {
                ok = false;
                verdicts.push(`group ${group}: no check: ${(err as Error).message}`);
              }
            }
            if (ctx.writeOut === 'json') ctx.io.out(json({ groups: rows, verdicts }));
            else if (ctx.writeOut === 'table') {
              ctx.io.out(
                renderTable(
                  ['ENDPOINT', 'GROUP', 'ID', 'INDEX', 'HASH', 'AGREES', 'ERROR'],
                  rows.map((r) => [
                    r.endpoint,
                    String(r.group),
                    String(r.id),
                    String(r.index),
                    r.hash.slice(0, 16),
                    String(r.agrees),
                    r.error,
                  ]),
                ),
              );
              for (const v of verdicts) ctx.io.out(`${v}\n`);
            } else {
              for (const r of rows)
                ctx.io.out(
                  `${r.endpoint}, group ${r.group}, node ${r.id}, index ${r.index}, hash ${r.hash || `none (${r.error})`}\n`,
                );
              for (const v of verdicts) ctx.io.out(`${v}\n`);
            }
            return ok ? exitCodes.success : exitCodes.error;
          }),
        )
        .demandCommand(1, 'endpoint needs a subcommand: status, health or hashkv'),
    () => {},
  );
}
