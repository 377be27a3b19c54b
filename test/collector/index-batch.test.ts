// The index's own decoding of a stored entry must read what decodeBatch reads: the same sequence,
// time, lines (as views of the entry, at the same positions), unparsed reasons and findings.
import t, { type Test } from 'tap'
import { eventRows } from '../../collector/event-fields.ts'
import { decodeIndexedEntry } from '../../collector/index-batch.ts'
import { decodeBatch, decodeSealedBatch, encodeBatch, encodeSealedBatch, type Batch, type WireRecord } from '../../proto/wire.ts'
import { batchOf, generatedBatches, linesToRecords } from './fixtures.ts'

function entryOf(batchBytes: Uint8Array): Buffer {
  return Buffer.from(encodeSealedBatch({ batch: batchBytes, signature: Buffer.alloc(64, 1), keyId: 'k1', algorithm: 'ed25519' }))
}

function same(t: Test, entry: Buffer, what: string): void {
  const want = decodeBatch(decodeSealedBatch(entry).batch)
  const got = decodeIndexedEntry(entry)
  t.equal(got.sequence, want.sequence, `${what}: sequence`)
  t.equal(got.createdUnixMs, want.createdUnixMs, `${what}: time`)
  t.same(got.records.map((r) => ({ line: r.line && Buffer.from(r.line).toString(), unparsedReason: r.unparsedReason })), want.records.map((r) => ({ line: r.line && Buffer.from(r.line).toString(), unparsedReason: r.unparsedReason })), `${what}: records`)
  t.strictSame(got.findings, want.findings, `${what}: findings`)
  t.strictSame([...eventRows(got, entry)], [...eventRows(want, entry)], `${what}: the rows an index holds`)
}

function varint(value: bigint): number[] {
  const out: number[] = []
  let v = BigInt.asUintN(64, value)
  do {
    const b = Number(v & 0x7fn)
    v >>= 7n
    out.push(v > 0n ? b | 0x80 : b)
  } while (v > 0n)
  return out
}

/** A varint field (wire type 0) as bytes. */
function varintField(field: number, value: bigint): Buffer {
  return Buffer.from([...varint(BigInt(field << 3)), ...varint(value)])
}

t.test('generated batches with findings read alike', async (t) => {
  const { chains } = generatedBatches({ events: 1200, perBatch: 300 })
  for (const sealed of chains[0]!.sealed) same(t, entryOf(sealed.batch), `sequence ${decodeBatch(sealed.batch).sequence}`)
})

t.test('records of every kind, unparsed reasons, redacted paths', async (t) => {
  const lines = linesToRecords(['{"verb":"get"}', 'not json', '{"verb":"list","user":{"username":"é"}}'])
  const records: WireRecord[] = [
    lines[0]!,
    { ...lines[1]!, unparsedReason: 'not JSON' },
    { offset: 40, quarantine: { length: 9, sha256: Buffer.alloc(32, 3), reason: 'too long', storedAs: 'q/1' } },
    { offset: 50, gap: { path: '/var/log/a.log', fromOffset: 1, toOffset: 2, reason: 'rotated' } },
    { ...lines[2]!, redactedPaths: ['requestObject.data'] },
  ]
  const findings: Batch['findings'] = [
    { recordIndex: 0, source: 'rule', id: 'r1', severity: 'high', message: 'm', auditId: 'a', details: { group: 'g1', n: '2' } },
    { recordIndex: 4, source: 'detector', id: 'd1', severity: 'info', message: '', auditId: '', details: {} },
  ]
  same(t, entryOf(encodeBatch(batchOf('node-a', 2, Buffer.alloc(32, 1), records, { findings }))), 'every kind')
})

t.test('int64 and uint64 limits, repeated and unknown fields', async (t) => {
  const base = encodeBatch(batchOf('node-a', 2, Buffer.alloc(32, 1), linesToRecords(['{"a":1}']), { createdUnixMs: -1_000 }))
  same(t, entryOf(base), 'a negative time')
  // Protobuf: the last of a repeated scalar wins; unknown fields are skipped.
  const later = Buffer.concat([base, varintField(2, 2n ** 40n), varintField(4, -(2n ** 50n)), varintField(99, 7n), Buffer.from([...varint(BigInt((98 << 3) | 2)), 3, 1, 2, 3])])
  same(t, entryOf(later), 'a later sequence and time, unknown fields')
  t.equal(decodeIndexedEntry(entryOf(later)).sequence, 2 ** 40)
  t.equal(decodeIndexedEntry(entryOf(later)).createdUnixMs, -(2 ** 50))
})

t.test('groups (a deprecated wire type a decoder still accepts) are skipped where unknown fields are', async (t) => {
  const tag = (field: number, wireType: number) => varint(BigInt((field << 3) | wireType))
  // Field 97, a group holding a varint, a nested group (field 5) and bytes, closed by its own end tag.
  const group = Buffer.from([...tag(97, 3), ...tag(1, 0), 7, ...tag(5, 3), ...tag(2, 0), 1, ...tag(5, 4), ...tag(3, 2), 2, 9, 9, ...tag(97, 4)])
  const record = Buffer.concat([Buffer.from([...tag(2, 2), 14]), Buffer.from('{"verb":"get"}'), group])
  const base = encodeBatch(batchOf('node-a', 2, Buffer.alloc(32, 1), linesToRecords(['{"a":1}'])))
  const withGroups = Buffer.concat([group, base, Buffer.from([...tag(7, 2), ...varint(BigInt(record.length))]), record, group])
  t.equal(decodeBatch(withGroups).records.length, 2, 'decodeBatch accepts it (so the collector stores it)')
  same(t, entryOf(withGroups), 'groups in the batch and in a record')
  const crossed = Buffer.concat([base, Buffer.from([...tag(97, 3), ...tag(1, 0), 7, ...tag(96, 4)])])
  t.throws(() => decodeIndexedEntry(entryOf(crossed)), /end tag of another field/)
})

t.test('bytes that are not an entry', async (t) => {
  t.throws(() => decodeIndexedEntry(Buffer.from([(1 << 3) | 2, 10, 1])), RangeError)
  t.throws(() => decodeIndexedEntry(Buffer.from([(2 << 3) | 2, 1, 1])), /no batch/)
})
