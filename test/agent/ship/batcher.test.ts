import t from 'tap'
import { Batcher, type ProcessedRecord } from '../../../agent/ship/batcher.ts'
import type { BatchDraft } from '../../../agent/ship/sealer.ts'
import type { TailChunk, TailRecord } from '../../../agent/tail/tailer.ts'

const identity = { device: 1, inode: 7, fingerprint: Buffer.alloc(32), fingerprintLength: 256 }
const process = (r: TailRecord): ProcessedRecord => ({ record: { offset: r.offset, line: r.kind === 'line' ? r.bytes : Buffer.alloc(0) }, findings: [], eventMs: 0 })
function chunk(from: number, lines: string[], extra: Partial<TailChunk> = {}): TailChunk {
  const records: TailRecord[] = []
  let offset = from
  for (const l of lines) {
    records.push({ kind: 'line', offset, bytes: Buffer.from(l) })
    offset += l.length + 1
  }
  return { path: '/a/audit.log', identity, order: { liveAfter: 0 }, startOffset: from, endOffset: offset, records, endOfFile: false, bytesRead: offset - from, caughtUp: false, read: 0, ...extra }
}

t.test('closes batches at the event limit with contiguous offsets', async (t) => {
  const b = new Batcher({ maxEvents: 2, maxBytes: 1 << 20, maxWaitMs: 1000 }, undefined)
  const out: BatchDraft[] = []
  b.add(chunk(0, ['aa', 'bb', 'cc', 'dd', 'ee']), process, 0, out)
  t.same(out.map((d) => [d.startOffset, d.endOffset, d.records.length]), [[0, 6, 2], [6, 12, 2]])
  b.takeDue(999, out)
  t.equal(out.length, 2, 'not due yet')
  b.takeDue(1000, out)
  t.same(out.map((d) => [d.startOffset, d.endOffset]), [[0, 6], [6, 12], [12, 15]])
})

t.test('a batch never spans two files; the end of a file closes its batch and is recorded', async (t) => {
  const b = new Batcher({ maxEvents: 100, maxBytes: 1 << 20, maxWaitMs: 1000 }, undefined)
  const out: BatchDraft[] = []
  b.add(chunk(0, ['aa']), process, 0, out)
  b.add(chunk(3, [], { endOfFile: true }), process, 0, out)
  t.equal(out.length, 1)
  t.equal(out[0]!.endOfFile, true)
  b.add(chunk(0, ['zz'], { identity: { ...identity, inode: 8 } }), process, 0, out)
  b.takeDue(0, out, true)
  t.equal(out.length, 2)
  t.equal(out[1]!.identity.inode, 8)
})

t.test('an end of file after the last batch closed gets an empty marker batch, once', async (t) => {
  const b = new Batcher({ maxEvents: 1, maxBytes: 1 << 20, maxWaitMs: 1000 }, undefined)
  const out: BatchDraft[] = []
  b.add(chunk(0, ['aa']), process, 0, out)
  b.add(chunk(3, [], { endOfFile: true }), process, 0, out)
  t.same(out.map((d) => [d.records.length, d.endOfFile]), [[1, false], [0, true]])
  const resumed = new Batcher({ maxEvents: 1, maxBytes: 1 << 20, maxWaitMs: 1000 }, { path: '/a/audit.log', identity, order: { liveAfter: 0 }, offset: 3, endOfFile: true })
  const again: BatchDraft[] = []
  resumed.add(chunk(3, [], { endOfFile: true }), process, 0, again)
  t.equal(again.length, 0, 'already recorded in the checkpoint')
})

t.test('closes at the byte limit', async (t) => {
  const b = new Batcher({ maxEvents: 100, maxBytes: 5, maxWaitMs: 1000 }, undefined)
  const out: BatchDraft[] = []
  b.add(chunk(0, ['abc', 'def', 'g']), process, 0, out)
  t.same(out.map((d) => d.records.length), [2])
})

t.test('says from which of the tailer\'s reads the open draft holds lines', async (t) => {
  const b = new Batcher({ maxEvents: 3, maxBytes: 1 << 20, maxWaitMs: 1000 }, undefined)
  const out: BatchDraft[] = []
  t.equal(b.heldRead, undefined, 'nothing open')
  b.add(chunk(0, ['aa', 'bb'], { read: 4 }), process, 0, out)
  t.equal(b.heldRead, 4)
  b.add(chunk(6, ['cc', 'dd'], { read: 5 }), process, 0, out)
  t.equal(out.length, 1, 'closed at three events; dd opened the next')
  t.equal(b.heldRead, 5)
  b.takeDue(0, out, true)
  t.equal(b.heldRead, undefined, 'all sealed: no read is held')
})
