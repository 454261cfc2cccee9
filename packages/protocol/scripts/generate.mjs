#!/usr/bin/env node
// Generates packages/protocol/src/generated from protos/ with protoc (the npm `protoc` package,
// which ships its binary) and the ts-proto plugin.
//
//   node packages/protocol/scripts/generate.mjs           regenerate, writing only files that change
//   node packages/protocol/scripts/generate.mjs --check   fail if the committed files have drifted
//
// Output is written only when its content changes, so a regeneration that changes nothing leaves
// file times alone and the incremental build stays a no-op.
import { execFileSync } from 'node:child_process';
import {
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  mkdirSync,
  existsSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../..');
const protoDir = join(root, 'protos');
const outDir = resolve(here, '../src/generated');
const check = process.argv.includes('--check');
const require = createRequire(import.meta.url);

// The one place where ts-proto's options live. forceLong=number: int64 fields are JavaScript
// numbers and ts-proto's decoder throws on values above Number.MAX_SAFE_INTEGER.
const tsProtoOptions = [
  'outputServices=grpc-js',
  'forceLong=number',
  'esModuleInterop=true',
  'env=node',
  'useOptionals=none',
  'exportCommonSymbols=false',
  'outputIndex=false',
];

const protos = ['eraftkv.proto', 'grpc/health/v1/health.proto'];

function listFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? listFiles(path) : [path];
  });
}

const protocBin = require.resolve('protoc/protoc.cjs');
const plugin = join(dirname(require.resolve('ts-proto/package.json')), 'protoc-gen-ts_proto');
const tmp = mkdtempSync(join(tmpdir(), 'eraftkv-protoc-'));
try {
  execFileSync(
    process.execPath,
    [
      protocBin,
      `--plugin=protoc-gen-ts_proto=${plugin}`,
      `--ts_proto_out=${tmp}`,
      `--ts_proto_opt=${tsProtoOptions.join(',')}`,
      `--proto_path=${protoDir}`,
      ...protos,
    ],
    { stdio: 'inherit' },
  );
  // protoc's header names its own version; ts-proto's names the plugin version. Both are pinned in
  // package-lock.json, so the output is reproducible.
  const generated = new Map(listFiles(tmp).map((f) => [relative(tmp, f), readFileSync(f, 'utf8')]));
  const existing = new Map(
    listFiles(outDir).map((f) => [relative(outDir, f), readFileSync(f, 'utf8')]),
  );
  const changed = [...generated]
    .filter(([name, text]) => existing.get(name) !== text)
    .map(([n]) => n);
  const stale = [...existing.keys()].filter((name) => !generated.has(name));
  if (check) {
    if (changed.length > 0 || stale.length > 0) {
      console.error('generated protocol code is out of date with protos/:');
      for (const name of [...changed, ...stale])
        console.error(`  packages/protocol/src/generated/${name}`);
      console.error('run `npm run generate` and commit the result');
      process.exit(1);
    }
    console.log(`generated protocol code matches protos/ (${generated.size} files)`);
  } else {
    for (const name of changed) {
      const target = join(outDir, name);
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, generated.get(name));
    }
    for (const name of stale) rmSync(join(outDir, name));
    console.log(
      `protocol code: ${changed.length} written, ${stale.length} removed, ${generated.size - changed.length} unchanged`,
    );
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
