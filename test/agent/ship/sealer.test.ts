import { generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { keyIdOf } from '../../../proto/keys.ts'
import { verifySeal } from '../../../proto/signed-messages.ts'
import { BatchBody, batchDigest, decodeBatch } from '../../../proto/wire.ts'
import { Sealer, type BatchDraft } from '../../../agent/ship/sealer.ts'

const { privateKey, publicKey } = generateKeyPairSync('ed25519')
const key = { privateKey, publicKey, keyId: keyIdOf(publicKey) }
const draft = (line: string, endOfFile = false): BatchDraft => ({
  path: '/var/log/kubernetes/audit/audit-2026-11-25T10-00-00.000.log',
  identity: { device: 1, inode: 2, fingerprint: Buffer.alloc(32, 9), fingerprintLength: 256 },
  order: { rotatedAt: 1764064800000, liveAfter: 1764064700000 },
  startOffset: 0,
  endOffset: line.length + 1,
  endOfFile,
  body: BatchBody.of([{ offset: 0, line: Buffer.from(line) }], [{ recordIndex: 0, source: 'rule', id: 'exec-into-pod', severity: 'high', message: 'exec', auditId: 'a', details: {} }]),
  lineBytes: line.length,
  newestEventMs: 0,
  openedAt: 0,
})

t.test('seals a hash chain: sequence from 1, each batch links to the previous digest, signed bytes decode to the draft', async (t) => {
  const sealer = new Sealer('node-a', 'node-a', { nextSequence: 1, headDigest: Buffer.alloc(0) }, key)
  const one = sealer.seal(draft('{"a":1}'), key, 1000)
  const two = sealer.seal(draft('{"a":2}', true), key, 2000)
  const b1 = decodeBatch(one.sealed.batch)
  const b2 = decodeBatch(two.sealed.batch)
  t.equal(b1.sequence, 1)
  t.equal(b1.prevDigest.length, 0)
  t.equal(b2.sequence, 2)
  t.same(Buffer.from(b2.prevDigest), batchDigest(one.sealed.batch))
  t.same(two.digest, batchDigest(two.sealed.batch))
  t.ok(verifySeal(one.digest, one.sealed.signature, publicKey))
  t.equal(one.sealed.keyId, key.keyId)
  t.equal(Buffer.from(b2.records[0]!.line!).toString(), '{"a":2}')
  t.equal(b2.source.endOfFile, true)
  t.equal(b2.source.rotatedUnixMs, 1764064800000)
  t.equal(b2.findings[0]?.id, 'exec-into-pod')
  t.same(two.position, { path: b2.source.path, identity: draft('').identity, order: draft('').order, offset: 8, endOfFile: true })
  const flipped = Buffer.from(one.sealed.batch)
  flipped[flipped.length - 1]! ^= 1
  t.notOk(verifySeal(batchDigest(flipped), one.sealed.signature, publicKey), 'one flipped bit breaks the signature')
})

t.test('continues a chain from a checkpoint', async (t) => {
  const head = Buffer.alloc(32, 3)
  const sealer = new Sealer('node-a', 'node-a', { nextSequence: 42, headDigest: head }, key)
  const b = decodeBatch(sealer.seal(draft('{}'), key, 0).sealed.batch)
  t.equal(b.sequence, 42)
  t.same(Buffer.from(b.prevDigest), head)
  t.equal(sealer.head.nextSequence, 43)
})

t.test('writes a batch\'s bytes where it is told (the agent\'s ring of sealed batches), the same bytes as alone', async (t) => {
  const storage = Buffer.alloc(4096)
  const sealer = new Sealer('node-a', 'node-a', { nextSequence: 1, headDigest: Buffer.alloc(0) }, key, (size) => storage.subarray(100, 100 + size))
  const alone = new Sealer('node-a', 'node-a', { nextSequence: 1, headDigest: Buffer.alloc(0) }, key)
  const item = sealer.seal(draft('{"kind":"Event"}'), key, 7)
  t.equal(item.sealed.batch.buffer, storage.buffer)
  t.equal(item.sealed.batch.byteOffset, storage.byteOffset + 100)
  t.same(Buffer.from(item.sealed.batch), Buffer.from(alone.seal(draft('{"kind":"Event"}'), key, 7).sealed.batch))
})
