import { appendFileSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pino } from 'pino'
import t from 'tap'
import { openFileStore as openStore, readSegment, segmentName, streamEntries } from '../../collector/store/file-store.ts'
import { StoreError } from '../../collector/store/store.ts'
import { batchDigest, decodeBatch, encodeSealedBatch } from '../../proto/wire.ts'
import { appendSealed, Chain, testKey } from './fixtures.ts'

const key = testKey()

function capture() {
  const lines: Record<string, unknown>[] = []
  const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) })
  return { logger, lines }
}

async function appendChain(store: Awaited<ReturnType<typeof openStore>>, chain: Chain, count: number) {
  for (const s of chain.grow(count)) await appendSealed(store, chain.streamId, s)
}

/** The digest the chain check sees for a stored sequence; the check answers 'stored', so nothing is written. */
async function digestAt(store: Awaited<ReturnType<typeof openStore>>, chain: Chain, sequence: number): Promise<Buffer | undefined> {
  const any = chain.sealed[0]!
  let seen: Buffer | undefined
  const outcome = await store.append(chain.streamId, { batch: decodeBatch(any.batch), sealed: any, digest: batchDigest(any.batch) }, async (view) => {
    seen = await view.digestAt(sequence)
    return 'stored'
  })
  if (outcome !== 'stored') throw new Error(`the store wrote although the check said 'stored'`)
  return seen
}

t.test('appends, keeps the head, and finds it again after a reopen', async (t) => {
  const dir = t.testdir()
  const store = await openStore(dir)
  const chain = new Chain('node-a', key)
  await appendChain(store, chain, 5)
  t.equal((await store.head('node-a'))?.sequence, 5)
  t.same((await store.head('node-a'))?.digest, batchDigest(chain.sealed[4]!.batch))
  await store.close()

  const again = await openStore(dir)
  t.same(await again.streams(), ['node-a'])
  const head = (await again.head('node-a'))!
  t.equal(head.sequence, 5)
  t.same(head.digest, batchDigest(chain.sealed[4]!.batch))
  t.same(head.sealed, Buffer.from(encodeSealedBatch(chain.sealed[4]!)))
  t.same(await digestAt(again, chain, 2), batchDigest(chain.sealed[1]!.batch), 'the chain check sees the stored digests')
  await appendChain(again, chain, 1)
  await again.close()

  const entries = []
  for await (const { item } of streamEntries(dir, 'node-a')) entries.push(item)
  t.equal(entries.length, 6)
  t.ok(entries.every((e) => e.kind === 'entry'))
})

t.test('files are 0600 and directories 0700', async (t) => {
  const dir = t.testdir()
  const store = await openStore(dir)
  await appendChain(store, new Chain('node-a', key), 1)
  await store.close()
  t.equal(statSync(join(dir, 'streams')).mode & 0o777, 0o700)
  t.equal(statSync(join(dir, 'streams', 'node-a')).mode & 0o777, 0o700)
  t.equal(statSync(join(dir, 'streams', 'node-a', segmentName(1))).mode & 0o777, 0o600)
})

t.test('rolls segments at the size limit, each named by its first sequence, and never rewrites earlier bytes', async (t) => {
  const dir = t.testdir()
  const store = await openStore(dir, { segmentBytes: 2000 })
  const chain = new Chain('node-a', key)
  await appendChain(store, chain, 3)
  const first = readFileSync(join(dir, 'streams', 'node-a', segmentName(1)))
  await appendChain(store, chain, 20)
  const names = readdirSync(join(dir, 'streams', 'node-a')).sort()
  t.ok(names.length > 2, `several segments (${names.join(', ')})`)
  t.equal(names[0], segmentName(1))
  const now = readFileSync(join(dir, 'streams', 'node-a', segmentName(1)))
  t.same(now.subarray(0, first.length), first, 'bytes written earlier are unchanged')
  let seq = 0
  for (const name of names) {
    for await (const item of readSegment(join(dir, 'streams', 'node-a', name))) {
      t.equal(item.kind, 'entry')
      seq++
      if (item.offset === 0) t.equal(name, segmentName(seq), `${name} starts at ${seq}`)
    }
  }
  t.equal(seq, 23)
  // the digest of an entry out of the in-memory window is looked up on disk
  const digest = await digestAt(store, chain, 4)
  t.same(digest, batchDigest(chain.sealed[3]!.batch))
  await store.close()
})

t.test('rejects an append that is not the next sequence, and bad stream ids', async (t) => {
  const dir = t.testdir()
  const store = await openStore(dir)
  const chain = new Chain('node-a', key)
  const [one, two] = chain.grow(2)
  await t.rejects(appendSealed(store, 'node-a', two!), StoreError)
  await appendSealed(store, 'node-a', one!)
  await t.rejects(appendSealed(store, '../escape', one!), /does not match/)
  await t.rejects(appendSealed(store, '.hidden', one!), /does not match/)
  await store.close()
})

t.test('a torn tail is cut at start-up and logged; the stream continues from the last whole batch', async (t) => {
  for (const [what, damage] of [
    ['half an entry', (file: string, size: number) => truncateSync(file, size - 10)],
    ['half a header', (file: string) => appendFileSync(file, Buffer.from([0, 0, 1]))],
    ['zero-filled blocks', (file: string) => appendFileSync(file, Buffer.alloc(4096))],
    ['a whole header and a zero-filled body', (file: string, size: number) => {
      const bytes = readFileSync(file)
      bytes.fill(0, size - 30)
      writeFileSync(file, bytes)
    }],
  ] as const) {
    const dir = t.testdir()
    const chain = new Chain('node-a', key)
    const store = await openStore(dir)
    await appendChain(store, chain, 3)
    await store.close()
    const file = join(dir, 'streams', 'node-a', segmentName(1))
    const whole = readFileSync(file)
    damage(file, whole.length)
    const sizeDamaged = statSync(file).size

    const { logger, lines } = capture()
    const again = await openStore(dir, { logger })
    const expectedHead = what === 'half an entry' || what === 'a whole header and a zero-filled body' ? 2 : 3
    t.equal((await again.head('node-a'))?.sequence, expectedHead, `${what}: head`)
    const cut = lines.find((l) => /torn tail/.test(String(l.msg)))
    t.ok(cut, `${what}: logged`)
    t.equal(cut?.segment, file)
    t.equal(cut?.cutBytes, sizeDamaged - statSync(file).size, `${what}: the log says how many bytes were cut`)
    t.same(readFileSync(file), whole.subarray(0, statSync(file).size), `${what}: the bytes before the cut are untouched`)
    // the sender re-sends what was lost; the stream continues
    for (let seq = expectedHead + 1; seq <= 3; seq++) {
      await appendSealed(again, 'node-a', chain.sealed[seq - 1]!)
    }
    await appendChain(again, chain, 1)
    t.equal((await again.head('node-a'))?.sequence, 4)
    await again.close()
  }
})

t.test('damage that is not a torn tail stops the start-up instead of being cut', async (t) => {
  for (const [what, at, message] of [
    ['a byte in the first entry', (size: number) => 20, /damaged at byte 0: crc32 mismatch/],
    ['a byte in the last entry', (size: number) => size - 40, /damaged at byte \d+: crc32 mismatch/],
  ] as const) {
    const dir = t.testdir()
    const store = await openStore(dir)
    await appendChain(store, new Chain('node-a', key), 3)
    await store.close()
    const file = join(dir, 'streams', 'node-a', segmentName(1))
    const bytes = readFileSync(file)
    const i = at(bytes.length)
    bytes[i] = bytes[i]! ^ 0xff
    writeFileSync(file, bytes)
    await t.rejects(openStore(dir), message, what)
    t.equal(statSync(file).size, bytes.length, `${what}: nothing was cut`)
  }
})

t.test('one collector per store', async (t) => {
  const dir = t.testdir()
  const store = await openStore(dir)
  await t.rejects(openStore(dir), /already open/)
  await store.close()
  // a lock left by a process that is gone is taken over
  writeFileSync(join(dir, 'collector.lock'), '999999999\n')
  const again = await openStore(dir)
  await again.close()
})
