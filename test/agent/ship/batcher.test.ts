import t from 'tap'
import { Batcher, type ProcessedRecord } from '../../../agent/ship/batcher.ts'
import { decodeBatch, encodeBatch } from '../../../proto/wire.ts'
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
  return { path: '/a/audit.log', identity, order: { liveAfter: 0 }, startOffset: from, endOffset: offset, records, endOfFile: false, bytesRead: offset - from, caughtUp: false, ...extra }
}

t.test('closes batches at the event limit with contiguous offsets', async (t) => {
  const b = new Batcher({ maxEvents: 2, maxBytes: 1 << 20, maxWaitMs: 1000 }, undefined)
  const out: BatchDraft[] = []
  b.add(chunk(0, ['aa', 'bb', 'cc', 'dd', 'ee']), process, 0, out)
  t.same(out.map((d) => [d.startOffset, d.endOffset, d.body.recordCount]), [[0, 6, 2], [6, 12, 2]])
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
  t.same(out.map((d) => [d.body.recordCount, d.endOfFile]), [[1, false], [0, true]])
  const resumed = new Batcher({ maxEvents: 1, maxBytes: 1 << 20, maxWaitMs: 1000 }, { path: '/a/audit.log', identity, order: { liveAfter: 0 }, offset: 3, endOfFile: true })
  const again: BatchDraft[] = []
  resumed.add(chunk(3, [], { endOfFile: true }), process, 0, again)
  t.equal(again.length, 0, 'already recorded in the checkpoint')
})

t.test('closes at the byte limit', async (t) => {
  const b = new Batcher({ maxEvents: 100, maxBytes: 5, maxWaitMs: 1000 }, undefined)
  const out: BatchDraft[] = []
  b.add(chunk(0, ['abc', 'def', 'g']), process, 0, out)
  t.same(out.map((d) => d.body.recordCount), [2])
})

t.test('a record and its findings are encoded into the draft as they are added; a sealed draft\'s body serves the next', async (t) => {
  const b = new Batcher({ maxEvents: 2, maxBytes: 1 << 20, maxWaitMs: 1000 }, undefined)
  const out: BatchDraft[] = []
  const lines = chunk(0, ['{"a":1}', '{"b":2}'])
  const withFinding = (r: TailRecord): ProcessedRecord => ({ ...process(r), findings: [{ source: 'rule', id: 'r', severity: 'high', message: 'm', auditId: 'x', details: {} }] })
  b.add(lines, withFinding, 0, out)
  // The read buffer is read into again: what was added must not change.
  for (const r of lines.records) if (r.kind === 'line') r.bytes.fill(0x78)
  const draft = out[0]!
  const sealed = encodeBatch({ streamId: 's', sequence: 1, prevDigest: Buffer.alloc(0), createdUnixMs: 0, node: 'n', source: { path: '/a', device: 1, inode: 7, fingerprint: Buffer.alloc(0), fingerprintLength: 0, startOffset: 0, endOffset: 16, endOfFile: false, rotatedUnixMs: 0, liveAfterUnixMs: 0 }, records: [], findings: [] })
  const bytes = Buffer.alloc(sealed.length + draft.body.byteLength)
  draft.body.copyTo(bytes, 0)
  const batch = decodeBatch(Buffer.concat([sealed, bytes.subarray(0, draft.body.byteLength)]))
  t.same(batch.records.map((r) => Buffer.from(r.line!).toString()), ['{"a":1}', '{"b":2}'])
  t.same(batch.findings.map((f) => f.recordIndex), [0, 1])
  b.recycle(draft)
  b.add(chunk(16, ['{"c":3}']), process, 0, out)
  b.takeDue(0, out, true)
  t.equal(out[1]!.body, draft.body, 'the storage is reused')
  t.equal(out[1]!.body.recordCount, 1)
})
