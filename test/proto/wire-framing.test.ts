// encodeBatch, encodePushBatchRequest and encodeSealedBatch frame the bulky fields by hand
// (proto/wire.ts): their bytes must be exactly what protobufjs writes for the
// same message, because the collector and the verifier decode with protobufjs
// and the seal covers those bytes. Held to that on generated messages of every
// shape (every record kind, offsets of 0 and past 2^32, lines past one-byte
// and two-byte lengths, strings with any code unit, findings, key rotations).
import fc from 'fast-check'
import protobuf from 'protobufjs'
import t from 'tap'
import { fileURLToPath } from 'node:url'
import { decodeBatch, encodeBatch, encodePushBatchRequest, encodeSealedBatch, type Batch, type SealedBatch, type WireRecord } from '../../proto/wire.ts'

const root = protobuf.loadSync(fileURLToPath(new URL('../../proto/auditrail/v2/collector.proto', import.meta.url)))
const reference = {
  batch: (b: Batch) => Buffer.from(root.lookupType('auditrail.v2.Batch').encode(b as unknown as Record<string, unknown>).finish()),
  request: (batches: SealedBatch[]) => Buffer.from(root.lookupType('auditrail.v2.PushBatchRequest').encode({ batches }).finish()),
}

// Any UTF-16 code unit, lone surrogates included: a user name in an audit line can hold one.
const text = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 60 })
const offset = fc.oneof(fc.constant(0), fc.nat(300), fc.maxSafeNat())
const line = fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: 20_000 }).map((n) => Buffer.alloc(n, 0x61)))
const bytes = (max: number) => fc.uint8Array({ maxLength: max })
const record: fc.Arbitrary<WireRecord> = fc.tuple(
  offset,
  fc.oneof(
    { weight: 4, arbitrary: line.map((l) => ({ line: l })) },
    { weight: 1, arbitrary: fc.record({ length: offset, sha256: bytes(32), reason: text, storedAs: text }).map((quarantine) => ({ quarantine })) },
    { weight: 1, arbitrary: fc.record({ path: text, fromOffset: offset, toOffset: offset, reason: text }).map((gap) => ({ gap })) },
  ),
  fc.option(text, { nil: undefined }),
  fc.option(fc.array(text, { maxLength: 3 }), { nil: undefined }),
).map(([o, kind, unparsedReason, redactedPaths]) => ({
  offset: o,
  ...kind,
  ...(unparsedReason !== undefined ? { unparsedReason } : {}),
  ...(redactedPaths !== undefined ? { redactedPaths } : {}),
}))

const batch: fc.Arbitrary<Batch> = fc.record({
  streamId: text,
  sequence: offset,
  prevDigest: fc.oneof(fc.constant(new Uint8Array(0)), bytes(32)),
  createdUnixMs: offset,
  node: text,
  source: fc.record({
    path: text,
    device: offset,
    inode: offset,
    fingerprint: bytes(256),
    fingerprintLength: fc.nat(256),
    startOffset: offset,
    endOffset: offset,
    endOfFile: fc.boolean(),
    rotatedUnixMs: offset,
    liveAfterUnixMs: offset,
  }),
  records: fc.array(record, { maxLength: 12 }),
  findings: fc.array(
    fc.record({
      recordIndex: fc.nat(20),
      source: fc.constantFrom('rule' as const, 'detector' as const),
      id: text,
      severity: fc.constantFrom('info' as const, 'high' as const),
      message: text,
      auditId: text,
      details: fc.dictionary(text, text, { maxKeys: 3 }),
    }),
    { maxLength: 4 },
  ),
  keyRotation: fc.option(fc.record({ previousKeyId: text, endorsement: bytes(64) }), { nil: undefined }),
})

const sealed: fc.Arbitrary<SealedBatch> = fc.record({ batch: fc.oneof(fc.constant(new Uint8Array(0)), line), signature: bytes(64), keyId: text, algorithm: text })

t.test('encodeBatch writes exactly the bytes protobufjs writes', async (t) => {
  fc.assert(fc.property(batch, (b) => Buffer.from(encodeBatch(b)).equals(reference.batch(b))), { numRuns: 2000, seed: 14 })
  t.pass('2,000 generated batches')
})

t.test('encodePushBatchRequest writes exactly the bytes protobufjs writes', async (t) => {
  fc.assert(fc.property(fc.array(sealed, { maxLength: 5 }), (batches) => Buffer.from(encodePushBatchRequest(batches)).equals(reference.request(batches))), { numRuns: 1000, seed: 14 })
  t.pass('1,000 generated requests')
})

t.test('a batch of real lines: the same bytes, and they decode to the lines', async (t) => {
  const lines = Array.from({ length: 2000 }, (_, i) => Buffer.from(`{"kind":"Event","auditID":"${i}","pad":"${'x'.repeat(i % 3000)}"}`))
  const records: WireRecord[] = lines.map((l, i) => ({ offset: i * 1000, line: l }))
  records.push({ offset: 5, line: Buffer.from('{}'), redactedPaths: ['requestObject.data.x'] }, { offset: 6, line: Buffer.from('x'), unparsedReason: 'not JSON' })
  const b: Batch = { streamId: 's', sequence: 1, prevDigest: new Uint8Array(0), createdUnixMs: Date.now(), node: 'n', source: { path: '/a', device: 1, inode: 2, fingerprint: Buffer.alloc(256, 1), fingerprintLength: 256, startOffset: 0, endOffset: 99, endOfFile: false, rotatedUnixMs: 0, liveAfterUnixMs: 0 }, records, findings: [] }
  const bytes = encodeBatch(b)
  t.ok(Buffer.from(bytes).equals(reference.batch(b)))
  t.same(decodeBatch(bytes).records.map((r) => r.line && Buffer.from(r.line).toString()), records.map((r) => r.line!.toString()))
})

t.test('encodeSealedBatch writes exactly the bytes protobufjs writes, after the header room asked for', async (t) => {
  const type = root.lookupType('auditrail.v2.SealedBatch')
  fc.assert(fc.property(sealed, fc.nat(16), (s, header) => {
    const out = encodeSealedBatch(s, header)
    return out.length >= header && out.subarray(header).equals(Buffer.from(type.encode(s as unknown as Record<string, unknown>).finish()))
  }), { numRuns: 1000, seed: 14 })
  t.pass('1,000 generated sealed batches')
})
