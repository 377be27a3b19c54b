// The image runs the compiled JavaScript (scripts/build.ts), the tests the .ts
// sources: this runs the build's `auditrail demo` (agent, collector, its index
// worker, verify, export and a query, each from the compiled files) as a person would.
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { build } from '../../scripts/build.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

t.test('the compiled agent and collector run the demo end to end', async (t) => {
  // Inside the repository, so that the build finds node_modules as the image's /app does.
  mkdirSync(join(ROOT, '.scratch'), { recursive: true })
  const out = mkdtempSync(join(ROOT, '.scratch', 'build-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))
  await build(out)
  const files = readdirSync(out, { recursive: true, encoding: 'utf8' })
  t.same(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')), [], 'no TypeScript left to strip')
  t.ok(files.includes(join('agent', 'guard', 'builtin-rules', 'workloads.yaml')), 'the rule pack is beside the compiled rules')
  t.ok(files.includes(join('proto', 'auditrail', 'v2', 'collector.proto')), 'and the .proto beside the codec')
  const entry = readFileSync(join(out, 'programs', 'main.js'), 'utf8')
  t.notMatch(entry, /from\s*["']\.\.\/(agent|collector|proto|shared)\//, 'the entry is a bundle: it imports no module of the tree')
  t.notMatch(entry, /from\s*["'](undici|protobufjs|pino|prom-client)["']/, 'nor a package of node_modules')
  const bundle = files.filter((f) => f.startsWith(`programs${sep}`) && f.endsWith('.js')).map((f) => readFileSync(join(out, f), 'latin1'))
  t.notOk(bundle.some((code) => /[^\x00-\x7f]/.test(code)), 'the bundle is ASCII (V8 would hold a chunk with one other character as UTF-16)')
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [join(out, 'programs', 'main.js'), 'demo', '--events', '3000', '--rate', '3000'], { cwd: out }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })
    })
  })
  t.equal(code, 0, 'exit 0')
  if (code !== 0) t.comment(`${stdout}\n${stderr}`)
  t.match(stdout, /^verify +ok/m)
  t.match(stdout, /^export +identical to the generated log byte for byte/m)
  t.match(stdout, /^findings +[1-9]\d* raised on the node as lines were read/m, 'the rules ran')
  t.match(stdout, /^query +events by \S+: [1-9]\d* /m, 'the query index (a worker thread of its own) answered')
})
