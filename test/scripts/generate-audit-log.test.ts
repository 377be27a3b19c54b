import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { gunzipSync } from 'node:zlib'
import t from 'tap'
import { backupNaming } from '../../agent/tail/backup-names.ts'
import { generateAuditLog } from '../../scripts/generate-audit-log.ts'

const CLI = fileURLToPath(new URL('../../scripts/generate-audit-log.ts', import.meta.url))
const START = Date.UTC(2026, 10, 25, 9, 0, 0)

function contents(dir: string): Buffer {
  const naming = backupNaming(join(dir, 'audit.log'))
  const backups = readdirSync(dir).map((n) => naming.parse(n)).filter((b) => b !== undefined).sort((a, b) => a.rotatedAt - b.rotatedAt)
  return Buffer.concat([...backups.map((b) => (b.gzip ? gunzipSync(readFileSync(join(dir, b.name))) : readFileSync(join(dir, b.name)))), readFileSync(join(dir, 'audit.log'))])
}

t.test('as fast as possible: the log on disk, the source file and onLine all hold the same lines; a seed replays', async (t) => {
  const root = t.testdir()
  const seen: Buffer[] = []
  const offsets: number[] = []
  const options = { events: 5000, seed: 11, startTimeMs: START, maxBytes: 256 * 1024, gzipEvery: 2 }
  const summary = await generateAuditLog({
    ...options,
    dir: join(root, 'a'),
    sourceFile: join(root, 'source.jsonl'),
    onLine: (w, line) => {
      seen.push(line)
      offsets.push(w.position().offset)
    },
  })
  const source = readFileSync(join(root, 'source.jsonl'))
  t.equal(summary.events, 5000)
  t.equal(summary.bytes, source.length)
  t.ok(summary.rotations > 10, `${summary.rotations} rotations`)
  t.equal(summary.sha256, createHash('sha256').update(source).digest('hex'))
  t.ok(Buffer.concat(seen).equals(source), 'onLine saw every line, in order')
  t.ok(contents(join(root, 'a')).equals(source), 'backups (gunzipped) + audit.log = the source, byte for byte')
  t.ok(offsets.every((o, i) => o >= seen[i]!.length), 'position() is where the line just written ends')
  t.equal(source.toString().split('\n').length - 1, 5000)
  const again = await generateAuditLog({ ...options, dir: join(root, 'b') })
  t.equal(again.sha256, summary.sha256, 'same seed and start time, same bytes')
})

t.test('paced: events stamped with the wall clock; an abort stops cleanly with whole lines', async (t) => {
  const dir = t.testdir()
  const abort = new AbortController()
  const before = Date.now()
  let n = 0
  const summary = await generateAuditLog({ dir, events: 1_000_000, rate: 2000, maxBytes: 1 << 20, onLine: () => ++n === 300 && abort.abort() }, abort.signal)
  const after = Date.now()
  t.ok(summary.events >= 300 && summary.events < 1_000_000, `${summary.events} events before the abort`)
  const lines = contents(dir).toString().split('\n')
  t.equal(lines.pop(), '', 'the file ends with a newline')
  t.equal(lines.length, summary.events)
  const received = lines.map((l) => JSON.parse(l)).filter((e) => e.stage === 'RequestReceived').map((e) => Date.parse(e.requestReceivedTimestamp))
  t.ok(received.every((ms) => ms >= before - 1 && ms <= after + 1000), 'request times follow the wall clock')
})

t.test('CLI: writes the log, prints a JSON summary; bad flags say what to fix', async (t) => {
  const dir = t.testdir()
  const run = promisify(execFile)
  const { stdout } = await run(process.execPath, [CLI, '--out', dir, '--events', '3000', '--max-size', '65536', '--max-backups', '2', '--compress', '--seed', '5'])
  const summary = JSON.parse(stdout)
  t.match(summary, { events: 3000, bytes: Number, rotations: Number, elapsedMs: Number, sha256: /^[0-9a-f]{64}$/ })
  const names = readdirSync(dir).sort()
  t.equal(names.length, 3, names.join(' '))
  t.ok(names.slice(0, 2).every((n) => /^audit-.*\.log\.gz$/.test(n)) && names[2] === 'audit.log', 'two gzipped backups and the live file')
  const failure = await run(process.execPath, [CLI, '--out', dir, '--events', 'many']).catch((err: { code: number; stderr: string }) => err)
  t.match(failure, { code: 2, stderr: /--events: expected a whole number >= 0, got "many"/ })
  const missing = await run(process.execPath, [CLI, '--events', '10']).catch((err: { code: number; stderr: string }) => err)
  t.match(missing, { code: 2, stderr: /--out DIR is required/ })
  const mode = await run(process.execPath, [CLI, '--out', dir, '--events', '1', '--mode', 'move']).catch((err: { code: number; stderr: string }) => err)
  t.match(mode, { code: 2, stderr: /--mode: expected rename, copytruncate or recreate/ })
})
