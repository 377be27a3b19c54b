// The wire codec's limits hold while it reads (issue 20, defect 1): a repeated field is
// counted entry by entry and the decoder stops at the first one past its limit.
import t from 'tap'
import { decodeBatch, decodeGetStreamHeadResponse, decodePushBatchRequest, encodeBatch, encodeGetStreamHeadResponse, encodePushBatchRequest, WireLimitError } from '../../proto/wire.ts'
import { batchOf, Chain, testKey } from '../collector/fixtures.ts'

const key = testKey()

/** `entry` repeated `n` times, then, when asked, bytes that are no protobuf at all. */
function repeated(entry: Buffer, n: number, garbageAfter = 0): Buffer {
  const body = Buffer.alloc(n * entry.length + garbageAfter, 0xff)
  for (let i = 0; i < n * entry.length; i += entry.length) entry.copy(body, i)
  return body
}

t.test('13.4 million five-byte SealedBatch entries: refused at the 65th, before the rest is read', async (t) => {
  const entry = Buffer.from([0x0a, 0x03, 0x0a, 0x01, 0x41])
  const refusal = new WireLimitError('request.batches', 'more than 64 batches per request, over the limit; send fewer at a time (the agent\'s collector.maxBatchesPerRequest)')
  t.throws(() => decodePushBatchRequest(repeated(entry, 13_421_772), { maxBatchesPerRequest: 64 }), refusal)
  // Read entry by entry: what follows the 65th is never looked at (a decoder that read it all would call this malformed).
  t.throws(() => decodePushBatchRequest(repeated(entry, 65, 1024), { maxBatchesPerRequest: 64 }), refusal)
  t.throws(() => decodePushBatchRequest(repeated(entry, 64, 1024), { maxBatchesPerRequest: 64 }), { name: 'WireError', message: /not a valid PushBatchRequest message/ }, 'the same tail after 64 entries: malformed')
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
  const head = decodeGetStreamHeadResponse(encodeGetStreamHeadResponse({ batch: repeated(record, 4 * 1024 * 1024), signature: Buffer.alloc(64), keyId: 'k', algorithm: 'ed25519' }))!
  const refusal = { name: 'WireLimitError', field: 'batch.records', message: /more than 20000 records per batch/ }
  t.throws(() => decodeBatch(head.batch), refusal)
  t.throws(() => decodeBatch(repeated(record, 20_001, 1024)), refusal, 'refused at the 20,001st record, before the rest is read')
})

t.test('a nested message that claims more bytes than its parent holds is malformed, not read past', async (t) => {
  // records (field 7) of length 5 holding an offset, in a batch 4 bytes long
  t.throws(() => decodeBatch(Buffer.from([0x3a, 0x05, 0x08, 0x01])), { name: 'WireError', field: 'batch', message: /not a valid Batch message/ })
})
