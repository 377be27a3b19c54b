#!/usr/bin/env node
// `npm run build`: the JavaScript the image runs (dist/, the source tree's layout).
// Type stripping at start costs the agent about a quarter of its start-up CPU and
// 25 MiB of RSS for as long as it runs (docs/benchmarks.md, 2026-12-07); compiled
// once here, the image and `npm run bench` run the same JavaScript. The tests run
// the .ts sources; test/programs/build.test.ts runs the agent and collector built.
//   node scripts/build.ts [--out DIR]
import { execFileSync } from 'node:child_process'
import { cpSync, readdirSync, rmSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** What the code reads beside itself at run time (rule and detector packs, the .proto). */
const ASSET_DIRS = ['agent', 'collector', 'proto']
const ASSET = /\.(ya?ml|proto)$/

/** Compiles the sources into `out` (emptied first) and copies the files they read at run time. */
export function build(out: string): void {
  rmSync(out, { recursive: true, force: true })
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  execFileSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', out], { cwd: ROOT, stdio: 'inherit' })
  for (const dir of ASSET_DIRS) {
    for (const file of readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })) {
      const from = join(ROOT, dir, file)
      if (ASSET.test(file) && statSync(from).isFile()) cpSync(from, join(out, dir, file))
    }
  }
  // "type": "module" makes node load the .js files as ES modules, as it does the .ts sources.
  cpSync(join(ROOT, 'package.json'), join(out, 'package.json'))
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { out: { type: 'string', default: join(ROOT, 'dist') } }, strict: true })
  build(values.out)
  process.stdout.write(`built ${relative(process.cwd(), values.out) || '.'}: node ${relative(process.cwd(), join(values.out, 'programs', 'main.js'))} --help\n`)
}
