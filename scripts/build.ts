#!/usr/bin/env node
// `npm run build`: the JavaScript the image runs (dist/, the source tree's layout).
// Type stripping at start costs the agent about a quarter of its start-up CPU and
// 25 MiB of RSS for as long as it runs (docs/benchmarks.md, 2026-12-07); compiled
// once here, the image and `npm run bench` run the same JavaScript. The tests run
// the .ts sources; test/scripts/build.test.ts runs the agent and collector built.
//
// programs/main.js is then bundled with its dependencies (esbuild), each command's
// code in a chunk of its own beside it. Loading a few hundred small CommonJS files
// of node_modules (undici, protobufjs, pino, prom-client...) one by one was most of
// the rest: `agent --help` 0.37-0.39 -> 0.21-0.23 CPU s, 100 -> 82 MiB RSS. The
// compiled tree stays beside the bundle: the collector's index worker runs from it,
// and the rule packs and the .proto are read from it, where each module's
// import.meta.url (rewritten in the bundle to the module's own file) points.
//   node scripts/build.ts [--out DIR]
import { execFileSync } from 'node:child_process'
import { cpSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { dirname, join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { build as esbuild, type Plugin } from 'esbuild'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** What the code reads beside itself at run time (rule and detector packs, the .proto). */
const ASSET_DIRS = ['agent', 'collector', 'proto']
const ASSET = /\.(ya?ml|proto)$/

/** Compiles the sources into `out` (emptied first) and copies the files they read at run time. */
export async function build(out: string): Promise<void> {
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
  await bundle(out)
}

/** Replaces out/programs/main.js with the bundle of it and its dependencies, and its chunks beside it. */
async function bundle(out: string): Promise<void> {
  const outdir = join(out, 'programs')
  await esbuild({
    entryPoints: [join(outdir, 'main.js')],
    outdir,
    allowOverwrite: true,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    // The PostgreSQL driver's optional native binding is not installed.
    external: ['pg-native'],
    // What the CommonJS packages require at run time (their optional modules, protobufjs' inquire) is found
    // from the bundle's place, as from the tree's: node_modules beside out/ (the image's /app/node_modules).
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    plugins: [ownFileUrls(out, outdir)],
    // Without comments (and their indentation) the bundle is 2.7 MB instead of 3.8, and plain ASCII: a
    // comment's "—" or "µ" made V8 hold its whole chunk as UTF-16 source, twice its bytes, for as long
    // as the agent runs. The licence comments go to a .LEGAL.txt beside their chunk, for the same reason.
    // Idle agent, 8 interleaved pairs: RSS 111-125 -> 105-118 MiB, external memory 8.1 -> 6.0 MiB;
    // agent --help 83 -> 77 MiB (3 pairs).
    minifyWhitespace: true,
    legalComments: 'external',
    logLevel: 'error',
  })
}

/**
 * In the bundle, import.meta.url of every compiled module names the module's own file in the tree, so that
 * what it reads beside itself is found there; import.meta.main is false (no module of the tree is the
 * process's entry once bundled: scripts/generate-audit-log.js would otherwise run its command in the demo).
 */
function ownFileUrls(out: string, outdir: string): Plugin {
  return {
    name: 'own-file-urls',
    setup(b) {
      b.onLoad({ filter: /\.js$/ }, (args) => {
        if (!args.path.startsWith(out + sep)) return undefined
        const url = relative(outdir, args.path).split(sep).join('/')
        const contents = readFileSync(args.path, 'utf8')
          .replaceAll('import.meta.url', `new URL(${JSON.stringify(url)}, import.meta.url).href`)
          .replaceAll('import.meta.main', 'false')
        return { contents, loader: 'js', resolveDir: dirname(args.path) }
      })
    },
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { out: { type: 'string', default: join(ROOT, 'dist') } }, strict: true })
  await build(values.out)
  process.stdout.write(`built ${relative(process.cwd(), values.out) || '.'}: node ${relative(process.cwd(), join(values.out, 'programs', 'main.js'))} --help\n`)
}
