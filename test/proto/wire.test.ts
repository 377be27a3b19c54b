// The wire codec's limits hold while it reads (issue 20, defect 1): a repeated field is
// counted entry by entry and the decoder stops at the first one past its limit.
import t from 'tap'
import { decodeBatch, decodeGetStreamHeadResponse, decodePushBatchRequest, encodeBatch, encodeGetStreamHeadResponse, encodePushBatchRequest, WireLimitError } from '../../proto/wire.ts'
import { batchOf, Chain, testKey } from '../collector/fixtures.ts'

const key = testKey()

t.test('13.4 million five-byte SealedBatch entries: refused after the 65th, in milliseconds', async (t) => {
  const entry = Buffer.from([0x0a, 0x03, 0x0a, 0x01, 0x41])
  const body = Buffer.alloc(13_421_772 * entry.length)
  for (let i = 0; i < body.length; i += entry.length) entry.copy(body, i)
  const started = performance.now()
  t.throws(() => decodePushBatchRequest(body, { maxBatchesPerRequest: 64 }), new WireLimitError('request.batches', 'more than 64 batches per request, over the limit; send fewer at a time (the agent\'s collector.maxBatchesPerRequest)'))
  const ms = performance.now() - started
  t.ok(ms < 200, `${ms.toFixed(1)} ms`)
  t.equal(decodePushBatchRequest(encodePushBatchRequest(new Chain('node-a', key).grow(3)), { maxBatchesPerRequest: 3 }).length, 3, 'at the limit: decoded')
})

t.test('records, findings, redacted paths and finding details count against the batch\'s limit', async (t) => {
  const finding = { recordIndex: 0, source: 'rule' as const, id: 'r', severity: 'low' as const, message: '', auditId: '', details: {} }
  const records = (n: number, paths = 0) => Array.from({ length: n }, (_, i) => ({ offset: i, line: Buffer.from('{}'), ...(paths > 0 ? { redactedPaths: Array.from({ length: paths }, (_, j) => `p${j}`) } : {}) }))
  const bytes = (overrides: Parameters<typeof batchOf>[4], n = 1, paths = 0) => encodeBatch(batchOf('node-a', 1, Buffer.alloc(0), records(n, paths), overrides))
  t.equal(decodeBatch(bytes({}, 5), { maxRecordsPerBatch: 5 }).records.length, 5)
  t.throws(() => decodeBatch(bytes({}, 6), { maxRecordsPerBatch: 5 }), { name: 'WireLimitError', field: 'batch.records', message: /more than 5 records per batch/ })
  t.throws(() => decodeBatch(bytes({ findings: Array(6).fill(finding) }), { maxRecordsPerBatch: 5 }), { name: 'WireLimitError', field: 'batch.findings' })
  // 16 per record on average: 2 records may carry 32 paths between them, not 33.
  t.equal(decodeBatch(bytes({}, 2, 16), { maxRecordsPerBatch: 2 }).records[1]!.redactedPaths!.length, 16)
  t.throws(() => decodeBatch(bytes({}, 1, 33), { maxRecordsPerBatch: 2 }), { name: 'WireLimitError', field: 'batch.records[].redacted_paths' })
  const details = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v']))
  t.throws(() => decodeBatch(bytes({ findings: [{ ...finding, details }] }), { maxRecordsPerBatch: 2 }), { name: 'WireLimitError', field: 'batch.findings[].details' })
})

t.test('the agent\'s side: a stream head whose batch holds 4 million empty records is refused as it is read', async (t) => {
  // records { offset: 0 }, 16 MiB of them: what a hostile collector could hand the agent as its stream head
  const record = Buffer.from([0x3a, 0x02, 0x08, 0x00])
  const bomb = Buffer.alloc(4 * 1024 * 1024 * record.length)
  for (let i = 0; i < bomb.length; i += record.length) record.copy(bomb, i)
  const head = decodeGetStreamHeadResponse(encodeGetStreamHeadResponse({ batch: bomb, signature: Buffer.alloc(64), keyId: 'k', algorithm: 'ed25519' }))!
  const started = performance.now()
  t.throws(() => decodeBatch(head.batch), { name: 'WireLimitError', field: 'batch.records', message: /more than 20000 records per batch/ })
  t.ok(performance.now() - started < 200, `${(performance.now() - started).toFixed(1)} ms`)
})

t.test('a nested message that claims more bytes than its parent holds is malformed, not read past', async (t) => {
  // records (field 7) of length 5 holding an offset, in a batch 4 bytes long
  t.throws(() => decodeBatch(Buffer.from([0x3a, 0x05, 0x08, 0x01])), { name: 'WireError', field: 'batch', message: /not a valid Batch message/ })
})
