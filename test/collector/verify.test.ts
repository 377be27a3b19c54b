// Tampering with a real store: each kind of damage fails verification and is named.
import { readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { readSegment, segmentName } from '../../collector/store/file-store.ts'
import { verifyEvent, verifyStore } from '../../collector/verify.ts'
import { batchDigest } from '../../proto/wire.ts'
import { Chain, eventLine, testKey, trustOf } from './fixtures.ts'
import { postgresServer, storeHolding, STORE_KINDS } from './stores.ts'

const key = testKey()
const trusted = trustOf(key)

/** A store with one stream of `count` batches, in segments of about three batches each. */
async function store(t: Test, count = 10) {
  const chain = new Chain('node-a', key)
  const dir = await storeHolding(t, 'file', { 'node-a': chain.grow(count) }, 1500)
  const streamDir = join(dir, 'streams', 'node-a')
  return { dir, streamDir, segments: readdirSync(streamDir).sort(), chain }
}

async function offsets(file: string): Promise<{ offset: number; length: number }[]> {
  const out = []
  for await (const item of readSegment(file)) if (item.kind === 'entry') out.push({ offset: item.offset, length: 8 + item.bytes.length })
  return out
}

for (const kind of STORE_KINDS) {
  t.test(`${kind} store: a clean store passes and reports each stream head; one event is proved; unknown key and stream fail`, async (t) => {
    const chain = new Chain('node-a', key)
    const spec = await storeHolding(t, kind, { 'node-a': chain.grow(10), 'node-b': new Chain('node-b', key).grow(2) }, 1500)
    const result = await verifyStore(spec, trusted)
    t.equal(result.ok, true, JSON.stringify(result.problem))
    t.same(result.streams, [
      { stream: 'node-a', headSequence: 10, lines: 30, headDigest: batchDigest(chain.sealed[9]!.batch).toString('hex') },
      { stream: 'node-b', headSequence: 2, lines: 6, headDigest: batchDigest(new Chain('node-b', key).grow(2)[1]!.batch).toString('hex') },
    ])
    const proof = await verifyEvent(spec, trusted, { stream: 'node-a', sequence: 4, recordIndex: 2 })
    t.equal(proof.ok, true, JSON.stringify(proof.problem))
    t.match(proof.checks.join('\n'), /sequence 4: .*signature by key .* hold[\s\S]*link back: prev_digest equals the digest of sequence 3[\s\S]*link forward: sequence 5/)
    t.equal(proof.line?.toString(), eventLine(4, 2), 'the stored line')
    const head = await verifyEvent(spec, trusted, { stream: 'node-a', sequence: 10, recordIndex: 0 })
    t.match(head.checks.at(-1), /sequence 10 is the stream's head/)
    t.match((await verifyEvent(spec, trusted, { stream: 'node-a', sequence: 11, recordIndex: 0 })).problem?.reason, /sequence 11 is not stored/)
    t.match((await verifyStore(spec, trustOf(testKey()))).problem?.reason, /unknown key/)
    t.match((await verifyStore(spec, trusted, { stream: 'node-c' })).problem?.reason, /no stream "node-c" in .*streams: node-a, node-b/)
  })
}

t.test('postgres store: a row altered behind the triggers\' back fails on its signature; a removed row is a gap', async (t) => {
  const chain = new Chain('node-a', key)
  const url = await storeHolding(t, 'postgres', { 'node-a': chain.grow(6) })
  const server = await postgresServer()
  const db = new URL(url).pathname.slice(1)
  // What an attacker with the superuser's password can do: switch the triggers off, then rewrite or delete.
  await server.admin(db, `SET session_replication_role = replica; UPDATE auditrail.batches SET batch = overlay(batch placing '\\x21'::bytea from 40 for 1), digest = sha256(overlay(batch placing '\\x21'::bytea from 40 for 1)) WHERE sequence = 3`)
  const altered = await verifyStore(url, trusted)
  t.equal(altered.ok, false)
  t.match(altered.problem, { stream: 'node-a', sequence: 3, reason: /bad signature/ })
  t.equal(altered.problem?.segment, undefined, 'no segment to name in a database')
  await server.admin(db, `SET session_replication_role = replica; DELETE FROM auditrail.batches WHERE sequence IN (3, 4)`)
  const gap = await verifyStore(url, trusted)
  t.match(gap.problem, { stream: 'node-a', sequence: 5, reason: /gap: sequences 3 to 4 are missing/ })
  t.match((await verifyEvent(url, trusted, { stream: 'node-a', sequence: 5, recordIndex: 0 })).problem?.reason, /cannot check the link back: sequence 4 is not stored/)
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

t.test('stray file, empty store', async (t) => {
  const { dir, streamDir } = await store(t, 2)
  writeFileSync(join(streamDir, segmentName(1) + '.bak'), 'x')
  t.match((await verifyStore(dir, trusted)).problem, { segment: segmentName(1) + '.bak', reason: /unexpected file/ })
  t.match((await verifyStore(join(dir, 'elsewhere'), trusted)).problem?.reason, /holds no streams/)
})

t.test('a batch signed by another trusted key, without the stream key\'s endorsement, fails even with both keys trusted', async (t) => {
  const other = testKey()
  const chain = new Chain('node-a', key)
  const sealed = chain.grow(2)
  chain.key = other
  sealed.push(...chain.grow(1))
  // The PostgreSQL store's link trigger refuses to store this chain at all (postgres-store.test.ts).
  const dir = await storeHolding(t, 'file', { 'node-a': sealed })
  const result = await verifyStore(dir, trustOf(key, other))
  t.equal(result.ok, false)
  t.match(result.problem, { stream: 'node-a', sequence: 3, reason: /key not bound to the stream: stream node-a belongs to key/ })
  const proof = await verifyEvent(dir, trustOf(key, other), { stream: 'node-a', sequence: 3, recordIndex: 0 })
  t.equal(proof.ok, false, 'verify --event refuses the forged event too')
})
