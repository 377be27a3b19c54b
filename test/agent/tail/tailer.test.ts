// The tailer against real files: rename rotation (plain and gzip), copy-truncate,
// delete and re-create, truncation, half-written lines, oversized lines, and
// restarts from a checkpoint after the file was rotated away, and a first start
// that begins at the oldest retained backup.
import { appendFileSync, copyFileSync, readFileSync, renameSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import t, { type Test } from 'tap'
import { backupNameFor } from '../../../agent/tail/backup-names.ts'
import { QuarantineDirectory } from '../../../agent/tail/quarantine.ts'
import { Tailer, type TailPosition, type TailRecord } from '../../../agent/tail/tailer.ts'

const line = (i: number) => `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"${String(i).padStart(8, '0')}-0000-4000-8000-000000000000","verb":"get","n":${i}}`

function makeTailer(dir: string, overrides: Partial<ConstructorParameters<typeof Tailer>[0]> = {}) {
  return new Tailer({
    path: join(dir, 'audit.log'),
    maxLineBytes: 64 * 1024,
    maxOpenFiles: 8,
    startAt: 'live',
    quarantine: new QuarantineDirectory(join(dir, 'quarantine'), 10 * 1024 * 1024),
    ...overrides,
  })
}

/**
 * Reads until `records` holds `total` line/quarantine records (gaps are collected
 * too); a read may return many lines at once. Fails after a deadline.
 */
async function readRecords(tailer: Tailer, total: number, records: TailRecord[] = []): Promise<TailRecord[]> {
  const deadline = Date.now() + 10_000
  let count = records.filter((r) => r.kind !== 'gap').length
  while (count < total) {
    if (Date.now() > deadline) throw new Error(`timed out with ${count} of ${total} records`)
    const chunk = await tailer.read()
    for (const r of chunk.records) {
      records.push(r)
      if (r.kind !== 'gap') count++
    }
    if (chunk.bytesRead === 0 && chunk.records.length === 0 && !chunk.endOfFile) {
      await tailer.discover()
      await new Promise((r) => setTimeout(r, 5))
    }
  }
  return records
}

const texts = (records: TailRecord[]) => records.filter((r) => r.kind === 'line').map((r) => (r as { bytes: Buffer }).bytes.toString())
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => line(from + i))

let clock = Date.UTC(2026, 10, 25, 10, 0, 0)
/** Renames the live file the way the apiserver's log backend does, optionally gzipping the backup. */
function rotate(dir: string, gzip = false): string {
  clock += 1000
  const backup = join(dir, backupNameFor(join(dir, 'audit.log'), clock))
  renameSync(join(dir, 'audit.log'), backup)
  writeFileSync(join(dir, 'audit.log'), '', { mode: 0o600 })
  return gzip ? gzipAway(backup) : backup
}

/** Gzips a backup the way the apiserver does: the .gz written, then the .log removed. */
function gzipAway(backup: string): string {
  writeFileSync(`${backup}.gz`, gzipSync(readFileSync(backup)))
  unlinkSync(backup)
  return `${backup}.gz`
}

const write = (dir: string, lines: string[]) => appendFileSync(join(dir, 'audit.log'), lines.map((l) => `${l}\n`).join(''))

/** A tailer started on a new live file of `lines` lines and done reading them: where most tests begin. */
async function tailingFromStart(t: Test, lines: number) {
  const dir = t.testdir()
  write(dir, range(0, lines))
  const tailer = makeTailer(dir)
  t.teardown(() => tailer.close())
  await tailer.start(undefined)
  return { dir, tailer, records: await readRecords(tailer, lines) }
}

t.test('follows rename rotation with and without gzip, in order, nothing lost or doubled', async (t) => {
  const { dir, tailer, records } = await tailingFromStart(t, 100)
  // Rotate three times before the reader comes back; one backup gzipped.
  rotate(dir)
  write(dir, range(100, 200))
  rotate(dir, true)
  write(dir, range(200, 300))
  rotate(dir)
  write(dir, range(300, 350))
  t.same(texts(await readRecords(tailer, 350, records)), range(0, 350))
})

t.test('idle at the end of the live file, the reader finds a rotation itself: no watcher or timer needed', async (t) => {
  const { dir, tailer, records } = await tailingFromStart(t, 10)
  t.same((await tailer.read()).records, [], 'at the end of the live file')
  rotate(dir)
  write(dir, range(10, 15))
  // Only read(), as the agent's idle loop calls it: the rotated file is finished and the new live file read.
  for (let i = 0; i < 4; i++) records.push(...(await tailer.read()).records)
  t.same(texts(records), range(0, 15))
})

t.test('a read says when it took all the live file held (the agent then waits for more), not while catching up', async (t) => {
  const dir = t.testdir()
  // 4,000 lines of about 110 bytes: more than one read of 256 KiB.
  write(dir, range(0, 4000))
  const tailer = makeTailer(dir)
  t.teardown(() => tailer.close())
  await tailer.start(undefined)
  const first = await tailer.read()
  t.equal(first.bytesRead, 256 * 1024)
  t.equal(first.caughtUp, false, 'a full read: more is there')
  let chunk = first
  while (!chunk.caughtUp) chunk = await tailer.read()
  t.ok(chunk.bytesRead > 0 && chunk.bytesRead < 256 * 1024, 'the rest of the file')
  t.equal(tailer.position()?.offset, range(0, 4000).join('\n').length + 1, 'all of it')
  write(dir, range(4000, 4003))
  const more = await tailer.read()
  t.same([more.records.length, more.caughtUp], [3, true], 'lines appended since: read, caught up again')
  t.equal((await tailer.read()).caughtUp, false, 'nothing new: an empty read')
})

t.test('a read buffer is read into again only after releaseReads; lines across reads stay whole', async (t) => {
  const dir = t.testdir()
  const lines = range(0, 8000) // about 900 KiB: four reads of 256 KiB
  write(dir, lines)
  const tailer = makeTailer(dir)
  t.teardown(() => tailer.close())
  await tailer.start(undefined)
  const first = await tailer.read()
  const second = await tailer.read()
  // The last line of a read: the first may be one begun in the read before, copied out.
  const bufferOf = (chunk: { records: TailRecord[] }) => (chunk.records.at(-1) as { bytes: Buffer }).bytes.buffer
  t.not(bufferOf(second), bufferOf(first), 'the first read is held: the second has a buffer of its own')
  t.same(texts(first.records), lines.slice(0, first.records.length), 'the first read\'s lines are as read')
  const copied = [...first.records, ...second.records].map((r) => (r.kind === 'line' ? { ...r, bytes: Buffer.from(r.bytes) } : r))
  tailer.releaseReads()
  const third = await tailer.read()
  t.ok([bufferOf(first), bufferOf(second)].includes(bufferOf(third)), 'released: a buffer is read into again')
  tailer.releaseReads()
  const records = [...copied, ...third.records.map((r) => (r.kind === 'line' ? { ...r, bytes: Buffer.from(r.bytes) } : r))]
  t.same(texts(await readRecords(tailer, lines.length, records)), lines)
})

t.test('a half-written last line is held back until its newline arrives', async (t) => {
  const dir = t.testdir()
  writeFileSync(join(dir, 'audit.log'), `${line(1)}\n${line(2).slice(0, 30)}`)
  const tailer = makeTailer(dir)
  t.teardown(() => tailer.close())
  await tailer.start(undefined)
  t.same(texts(await readRecords(tailer, 1)), [line(1)])
  const more = await tailer.read()
  t.equal(more.records.length, 0, 'no record for the partial line')
  t.equal(tailer.position()?.offset, line(1).length + 1, 'the safe resume point stays before the partial line')
  appendFileSync(join(dir, 'audit.log'), `${line(2).slice(30)}\n`)
  t.same(texts(await readRecords(tailer, 1)), [line(2)])
})

t.test('a rotated file that ends without a newline ships its last line as incomplete', async (t) => {
  const dir = t.testdir()
  writeFileSync(join(dir, 'audit.log'), `${line(1)}\n{"cut`)
  const tailer = makeTailer(dir)
  t.teardown(() => tailer.close())
  await tailer.start(undefined)
  await readRecords(tailer, 1)
  rotate(dir)
  write(dir, [line(2)])
  const records = await readRecords(tailer, 2)
  const cut = records[0] as { kind: 'line'; bytes: Buffer; incomplete?: true }
  t.equal(cut.bytes.toString(), '{"cut')
  t.equal(cut.incomplete, true)
  t.same(texts(records).slice(1), [line(2)])
})

t.test('copy-truncate: the rest of the file is read from the copy, then the live file from 0', async (t) => {
  const { dir, tailer, records } = await tailingFromStart(t, 20)
  write(dir, range(20, 30))
  // logrotate copytruncate: copy, then truncate in place.
  clock += 1000
  copyFileSync(join(dir, 'audit.log'), join(dir, backupNameFor(join(dir, 'audit.log'), clock)))
  truncateSync(join(dir, 'audit.log'), 0)
  write(dir, range(30, 35))
  t.same(texts(await readRecords(tailer, 35, records)), range(0, 35))
})

t.test('a file that shrinks with no copy left is declared as a gap, then read from 0', async (t) => {
  const dir = t.testdir()
  write(dir, range(0, 10))
  const tailer = makeTailer(dir)
  t.teardown(() => tailer.close())
  await tailer.start(undefined)
  await readRecords(tailer, 10)
  write(dir, range(10, 20))
  truncateSync(join(dir, 'audit.log'), 0)
  write(dir, range(100, 102))
  const records = await readRecords(tailer, 2, [])
  const gap = records.find((r) => r.kind === 'gap')
  t.ok(gap, 'a gap record')
  if (gap?.kind === 'gap') {
    t.equal(gap.gap.fromOffset, range(0, 10).join('\n').length + 1)
    t.match(gap.gap.reason, /shrank|truncated/)
  }
  t.same(texts(records), range(100, 102))
})

t.test('the file deleted and re-created: the old one is read to its end, then the new one', async (t) => {
  const { dir, tailer, records } = await tailingFromStart(t, 10)
  write(dir, range(10, 15))
  unlinkSync(join(dir, 'audit.log'))
  write(dir, range(15, 25))
  t.same(texts(await readRecords(tailer, 25, records)), range(0, 25))
})

t.test('a line over the limit becomes a quarantine record; its bytes are kept on the node', async (t) => {
  const dir = t.testdir()
  const big = `{"kind":"Event","x":"${'a'.repeat(5 * 1024 * 1024)}"}`
  write(dir, [line(1), big, line(2)])
  const tailer = makeTailer(dir)
  t.teardown(() => tailer.close())
  await tailer.start(undefined)
  const records = await readRecords(tailer, 3)
  t.same(texts(records), [line(1), line(2)])
  const q = records[1]
  t.equal(q?.kind, 'quarantine')
  if (q?.kind === 'quarantine') {
    t.equal(q.quarantine.length, big.length)
    t.equal(q.offset, line(1).length + 1)
    t.equal(readFileSync(q.quarantine.storedAs, 'utf8'), big)
  }
})

/** A log with three backups (the middle one gzipped, the newest caught mid-gzip: a partial .gz beside its .log) and a live file. */
function logWithBackups(dir: string): string[] {
  write(dir, range(0, 30))
  rotate(dir)
  write(dir, range(30, 60))
  rotate(dir, true)
  write(dir, range(60, 90))
  const newest = rotate(dir)
  writeFileSync(`${newest}.gz`, gzipSync(readFileSync(newest)).subarray(0, 20))
  write(dir, range(90, 100))
  return range(0, 100)
}

t.test('startAt oldest: a first start reads the retained backups oldest first (gzipped ones included), then the live file', async (t) => {
  const dir = t.testdir()
  const all = logWithBackups(dir)
  const tailer = makeTailer(dir, { startAt: 'oldest' })
  t.teardown(() => tailer.close())
  const backlog = await tailer.start(undefined)
  t.equal(backlog.files, 3, 'three backups ahead of the live file')
  t.equal(backlog.rotatedUntil, clock, 'the backlog ends with the newest backup')
  t.same(texts(await readRecords(tailer, 100)), all)
  t.same((await tailer.read()).records, [], 'nothing twice')

  const live = makeTailer(dir)
  t.teardown(() => live.close())
  t.same(await live.start(undefined), { files: 0, rotatedUntil: 0 }, 'startAt live: no backlog')
  t.same(texts(await readRecords(live, 10)), all.slice(90), 'startAt live reads the live file only')
})

t.test('startAt oldest with no backup yet starts on the live file', async (t) => {
  const dir = t.testdir()
  write(dir, range(0, 5))
  const tailer = makeTailer(dir, { startAt: 'oldest' })
  t.teardown(() => tailer.close())
  t.same(await tailer.start(undefined), { files: 0, rotatedUntil: 0 })
  t.same(texts(await readRecords(tailer, 5)), range(0, 5))
})

t.test('the starting point of a first start, kept before reading, resumes in the backups after they were gzipped and the log rotated on', async (t) => {
  const dir = t.testdir()
  const all = logWithBackups(dir)
  const first = makeTailer(dir, { startAt: 'oldest' })
  await first.start(undefined)
  const start = first.position()!
  t.equal(start.offset, 0)
  t.ok(start.order.rotatedAt, 'the starting point lies in a backup')
  await first.close()
  // While the agent is down: the oldest backup is gzipped, the live file rotates twice.
  gzipAway(start.path)
  rotate(dir)
  write(dir, range(100, 120))
  rotate(dir, true)
  write(dir, range(120, 130))
  const second = makeTailer(dir, { startAt: 'oldest' })
  t.teardown(() => second.close())
  t.equal((await second.start(start)).files, 5, 'the five backups from the starting point on')
  t.same(texts(await readRecords(second, 130)), [...all, ...range(100, 130)])
})

t.test('restart: the checkpoint file was rotated and gzipped; it is finished from the offset, then the newer files', async (t) => {
  const dir = t.testdir()
  write(dir, range(0, 40))
  const first = makeTailer(dir)
  await first.start(undefined)
  await readRecords(first, 40)
  // Only 25 lines were acknowledged: that is where the checkpoint stands.
  const position = { ...first.position()!, offset: range(0, 25).join('\n').length + 1 }
  await first.close()
  rotate(dir, true)
  write(dir, range(40, 60))
  const second = makeTailer(dir)
  t.teardown(() => second.close())
  await second.start(position)
  t.same(texts(await readRecords(second, 35)), range(25, 60))
})

t.test('restart: the checkpoint file is gone; a gap is declared, then newer backups and the live file are read', async (t) => {
  const dir = t.testdir()
  write(dir, range(0, 10))
  const first = makeTailer(dir)
  await first.start(undefined)
  await readRecords(first, 10)
  const position: TailPosition = first.position()!
  await first.close()
  const oldBackup = rotate(dir)
  write(dir, range(10, 20))
  rotate(dir, true)
  write(dir, range(20, 25))
  rmSync(oldBackup)
  const second = makeTailer(dir)
  t.teardown(() => second.close())
  await second.start(position)
  const records = await readRecords(second, 15)
  t.equal(records[0]?.kind, 'gap', 'the loss comes first')
  if (records[0]?.kind === 'gap') t.match(records[0].gap.reason, /deleted/)
  t.same(texts(records), range(10, 25))
})

t.test('a live file caught holding only the start of its first line is not mistaken for a gzipped backup that starts alike', async (t) => {
  // Every audit line starts '{"kind":"Event","apiVersion":...': a fingerprint of those bytes alone matches any backup.
  const { dir, tailer, records } = await tailingFromStart(t, 100)
  rotate(dir, true)
  write(dir, range(100, 200))
  rotate(dir, true)
  const first = line(200)
  appendFileSync(join(dir, 'audit.log'), first.slice(0, 40))
  await tailer.discover()
  appendFileSync(join(dir, 'audit.log'), `${first.slice(40)}\n`)
  write(dir, range(201, 300))
  t.same(texts(await readRecords(tailer, 300, records)), range(0, 300), 'the second backup is read, the live file once')
  await new Promise((r) => setTimeout(r, 100))
  const chunk = await tailer.read()
  t.same(chunk.records, [], 'and nothing more')
})

/**
 * 150 rounds: five lines written, then `race` runs something against a discovery in progress, and
 * what is there is read. At the end every line must have been read exactly once, and nothing more.
 */
async function everyLineOnce(t: Test, race: (r: { dir: string; tailer: Tailer; round: number; readAll: () => Promise<void> }) => Promise<void>) {
  const dir = t.testdir()
  const tailer = makeTailer(dir)
  t.teardown(() => tailer.close())
  write(dir, range(0, 5))
  await tailer.start(undefined)
  const records = await readRecords(tailer, 5)
  let next = 5
  const readAll = async () => void (await readRecords(tailer, next, records))
  for (let round = 0; round < 150; round++) {
    write(dir, range(next, next + 5))
    next += 5
    await race({ dir, tailer, round, readAll })
    await readAll()
  }
  write(dir, range(next, next + 5))
  next += 5
  t.same(texts(await readRecords(tailer, next, records)), range(0, next))
  await new Promise((r) => setTimeout(r, 50))
  await tailer.discover()
  const rest: TailRecord[] = []
  for (let i = 0; i < 20; i++) rest.push(...(await tailer.read()).records)
  t.same(rest, [], 'no file read twice')
}

const turns = async (n: number) => {
  for (let k = n; k > 0; k--) await new Promise((r) => setImmediate(r))
}

t.test('rotations racing discovery (between pinning the live file and listing the backups): every line exactly once', (t) =>
  everyLineOnce(t, async ({ dir, tailer, round }) => {
    const discovering = tailer.discover()
    // Rotate somewhere inside discovery's awaits: open, stat, read head, list.
    await turns(round % 6)
    rotate(dir, round % 3 === 0)
    await discovering
  }))

t.test('a backup gzipped while discovery looks for it (its .log gone mid-check): every line exactly once', (t) =>
  everyLineOnce(t, async ({ dir, tailer, round, readAll }) => {
    await readAll()
    const backup = rotate(dir)
    const discovering = tailer.discover()
    // Gzip the backup the way the apiserver does (.gz written, then the .log removed) inside discovery's awaits.
    await turns(round % 8)
    gzipAway(backup)
    await discovering
  }))

t.test('the live file rotated, then gzipped, while discovery checks the backups: every line exactly once', (t) =>
  everyLineOnce(t, async ({ dir, tailer, round }) => {
    const discovering = tailer.discover()
    // Rotated after discovery pinned it, gzipped (its .log gone) after the listing named that .log.
    await turns(round % 5)
    const backup = rotate(dir)
    await turns(Math.floor(round / 5) % 6)
    gzipAway(backup)
    await discovering
  }))
