// Tampering with a real store: each kind of damage fails verification and is named.
import { readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { openStore, readSegment, segmentName } from '../../collector/store.ts'
import { verifyEvent, verifyStore } from '../../collector/verify.ts'
import { batchDigest, encodeSealedBatch } from '../../proto/wire.ts'
import { Chain, testKey, trustOf } from './fixtures.ts'

const key = testKey()
const trusted = trustOf(key)

/** A store with one stream of `count` batches, in segments of about three batches each. */
async function store(t: Test, count = 10) {
  const dir = t.testdir()
  const s = await openStore(dir, { segmentBytes: 1500 })
  const chain = new Chain('node-a', key)
  for (const [i, sealed] of chain.grow(count).entries()) await s.append('node-a', i + 1, batchDigest(sealed.batch), encodeSealedBatch(sealed))
  await s.close()
  const streamDir = join(dir, 'streams', 'node-a')
  return { dir, streamDir, segments: readdirSync(streamDir).sort(), chain }
}

async function offsets(file: string): Promise<{ offset: number; length: number }[]> {
  const out = []
  for await (const item of readSegment(file)) if (item.kind === 'entry') out.push({ offset: item.offset, length: 8 + item.bytes.length })
  return out
}

t.test('a clean store passes and reports each stream head', async (t) => {
  const { dir, segments, chain } = await store(t)
  t.ok(segments.length >= 3, `several segments: ${segments.join(' ')}`)
  const result = await verifyStore(dir, trusted)
  t.equal(result.ok, true, JSON.stringify(result.problem))
  t.same(result.streams, [{ stream: 'node-a', headSequence: 10, lines: 30, headDigest: batchDigest(chain.sealed[9]!.batch).toString('hex') }])
})

t.test('one flipped byte fails and is named', async (t) => {
  const { dir, streamDir, segments } = await store(t)
  const file = join(streamDir, segments[1]!)
  const entries = await offsets(file)
  const bytes = readFileSync(file)
  const at = entries[1]!.offset + 40
  bytes[at] = bytes[at]! ^ 0x01
  writeFileSync(file, bytes)
  const { ok, problem } = await verifyStore(dir, trusted)
  t.equal(ok, false)
  t.equal(problem?.segment, segments[1])
  t.equal(problem?.offset, entries[1]!.offset)
  t.match(problem?.reason, /altered bytes: crc32 mismatch/)
})

t.test('a flipped byte with a recomputed checksum fails on the signature', async (t) => {
  const { dir, streamDir, segments } = await store(t)
  const file = join(streamDir, segments[0]!)
  const bytes = readFileSync(file)
  const length = bytes.readUInt32BE(0)
  bytes[8 + length - 80] = bytes[8 + length - 80]! ^ 0x01 // inside the batch bytes, before the signature
  const { crc32 } = await import('node:zlib')
  bytes.writeUInt32BE(crc32(bytes.subarray(8, 8 + length)), 4)
  writeFileSync(file, bytes)
  const { problem } = await verifyStore(dir, trusted)
  t.equal(problem?.sequence, 1)
  t.match(problem?.reason, /bad signature/)
})

t.test('a deleted segment is a gap that names the missing sequences', async (t) => {
  const { dir, streamDir, segments } = await store(t)
  rmSync(join(streamDir, segments[1]!))
  const next = Number(segments[2]!.slice(0, 20))
  const { ok, problem } = await verifyStore(dir, trusted)
  t.equal(ok, false)
  t.equal(problem?.segment, segments[2])
  t.equal(problem?.offset, 0)
  t.equal(problem?.sequence, next)
  t.match(problem?.reason, new RegExp(`gap: sequences? ${Number(segments[1]!.slice(0, 20))}( to ${next - 1})? (is|are) missing`))
})

t.test('two swapped batches are a reordering', async (t) => {
  const { dir, streamDir, segments } = await store(t)
  const file = join(streamDir, segments[0]!)
  const [a, b] = await offsets(file)
  const bytes = readFileSync(file)
  const first = bytes.subarray(a!.offset, a!.offset + a!.length)
  const second = bytes.subarray(b!.offset, b!.offset + b!.length)
  writeFileSync(file, Buffer.concat([second, first, bytes.subarray(b!.offset + b!.length)]))
  const { problem } = await verifyStore(dir, trusted)
  t.equal(problem?.segment, segments[0])
  t.equal(problem?.offset, 0)
  t.equal(problem?.sequence, 2)
  t.match(problem?.reason, /reordering: sequence 2 is stored where 1 belongs; 1 is stored later/)
})

t.test('the last batch cut in half is a truncation', async (t) => {
  const { dir, streamDir, segments } = await store(t)
  const file = join(streamDir, segments.at(-1)!)
  const entries = await offsets(file)
  const last = entries.at(-1)!
  truncateSync(file, last.offset + Math.floor(last.length / 2))
  const { ok, problem } = await verifyStore(dir, trusted)
  t.equal(ok, false)
  t.equal(problem?.segment, segments.at(-1))
  t.equal(problem?.offset, last.offset)
  t.equal(problem?.sequence, 10)
  t.match(problem?.reason, /truncated: entry cut short/)
  t.equal(readFileSync(file).length, last.offset + Math.floor(last.length / 2), 'verify did not repair anything')
})

t.test('unknown key, wrong stream directory, stray file, empty store, unknown stream', async (t) => {
  const { dir, streamDir } = await store(t, 2)
  t.match((await verifyStore(dir, trustOf(testKey()))).problem?.reason, /unknown key/)
  t.match((await verifyStore(dir, trusted, { stream: 'node-b' })).problem?.reason, /no stream "node-b" in .*streams: node-a/)
  writeFileSync(join(streamDir, segmentName(1) + '.bak'), 'x')
  t.match((await verifyStore(dir, trusted)).problem, { segment: segmentName(1) + '.bak', reason: /unexpected file/ })
  t.match((await verifyStore(join(dir, 'elsewhere'), trusted)).problem?.reason, /holds no streams/)
})

t.test('a batch signed by another trusted key, without the stream key\'s endorsement, fails even with both keys trusted', async (t) => {
  const dir = t.testdir()
  const other = testKey()
  const s = await openStore(dir)
  const chain = new Chain('node-a', key)
  const sealed = chain.grow(2)
  chain.key = other
  sealed.push(...chain.grow(1))
  for (const [i, b] of sealed.entries()) await s.append('node-a', i + 1, batchDigest(b.batch), encodeSealedBatch(b))
  await s.close()
  const result = await verifyStore(dir, trustOf(key, other))
  t.equal(result.ok, false)
  t.match(result.problem, { stream: 'node-a', sequence: 3, reason: /key not bound to the stream: stream node-a belongs to key/ })
  const proof = await verifyEvent(dir, trustOf(key, other), { stream: 'node-a', sequence: 3, recordIndex: 0 })
  t.equal(proof.ok, false, 'verify --event refuses the forged event too')
})
