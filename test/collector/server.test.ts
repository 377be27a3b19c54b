// The collector over real HTTP on 127.0.0.1, fed batches signed the way the agent signs them.
import { once } from 'node:events'
import { readdirSync, readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { createGzip, createZstdCompress, zstdCompressSync } from 'node:zlib'
import t, { type Test } from 'tap'
import { startCollector, type CollectorLimits } from '../../collector/server.ts'
import { segmentName } from '../../collector/store/file-store.ts'
import { reading } from '../../collector/store/open.ts'
import { verifyStore } from '../../collector/verify.ts'
import {
  batchDigest,
  decodeGetStreamHeadResponse,
  decodePushBatchResponse,
  encodePushBatchRequest,
  GET_STREAM_HEAD_PATH,
  PUSH_BATCH_PATH,
  type SealedBatch,
} from '../../proto/wire.ts'
import { batchOf, Chain, gzip, headRequest, post, seal, testKey, trustOf } from './fixtures.ts'
import { freshStore, STORE_KINDS } from './stores.ts'

const key = testKey()
const stranger = testKey()

async function collector(t: Test, limits: Partial<CollectorLimits> = {}, dir = t.testdir()) {
  const c = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: dir, trustedKeys: trustOf(key), limits })
  t.teardown(() => c.close())
  return { ...c, dir }
}

function push(url: string, batches: SealedBatch[], headers: Record<string, string> = {}) {
  return post(url, PUSH_BATCH_PATH, encodePushBatchRequest(batches), headers)
}

function errorOf(res: { body: Buffer }): { code: string; message: string } {
  return JSON.parse(res.body.toString()) as { code: string; message: string }
}

/** Every stored entry of node-a, as stored. */
function storedBytes(spec: string): Promise<Buffer> {
  return reading(spec, async (store) => {
    const entries: Buffer[] = []
    for await (const item of store.entries('node-a')) if (item.kind === 'entry') entries.push(item.bytes)
    return Buffer.concat(entries)
  })
}

// The chain rules hold the same on both stores.
for (const kind of STORE_KINDS) {
  t.test(`${kind} store: accepts a chain, acknowledges the head, and serves it back`, async (t) => {
    const c = await collector(t, {}, await freshStore(t, kind))
    const chain = new Chain('node-a', key)
    const res = await push(c.url, chain.grow(3))
    t.equal(res.status, 200)
    t.equal(res.headers['content-type'], 'application/proto')
    t.same(decodePushBatchResponse(res.body), { streamId: 'node-a', acknowledgedSequence: 3 })
    const more = await push(c.url, chain.grow(2))
    t.same(decodePushBatchResponse(more.body).acknowledgedSequence, 5)

    const head = await post(c.url, GET_STREAM_HEAD_PATH, headRequest('node-a', key))
    t.equal(head.status, 200)
    t.same(Buffer.from(decodeGetStreamHeadResponse(head.body)!.batch), Buffer.from(chain.sealed[4]!.batch))
    const none = await post(c.url, GET_STREAM_HEAD_PATH, headRequest('node-b', key))
    t.equal(decodeGetStreamHeadResponse(none.body), undefined)
    t.equal(c.stats().acceptedBatches, 5)
  })

  t.test(`${kind} store: a batch already held is acknowledged again and not stored twice`, async (t) => {
    const c = await collector(t, {}, await freshStore(t, kind))
    const chain = new Chain('node-a', key)
    await push(c.url, chain.grow(4))
    const before = await storedBytes(c.dir)
    const again = await push(c.url, chain.sealed.slice(1, 4))
    t.equal(again.status, 200)
    t.equal(decodePushBatchResponse(again.body).acknowledgedSequence, 4)
    // a re-send overlapping the head: the old ones are skipped, the new one appended
    const overlap = await push(c.url, [...chain.sealed.slice(2, 4), ...chain.grow(1)])
    t.equal(decodePushBatchResponse(overlap.body).acknowledgedSequence, 5)
    const after = await storedBytes(c.dir)
    t.same(after.subarray(0, before.length), before)
    t.equal(c.stats().duplicateBatches, 5)
    t.equal(c.stats().acceptedBatches, 5)
  })

  t.test(`${kind} store: chain violations: fork, gap, broken link; each with its own code, the store unchanged`, async (t) => {
    const c = await collector(t, {}, await freshStore(t, kind))
    const chain = new Chain('node-a', key)
    await push(c.url, chain.grow(3))
    const before = await storedBytes(c.dir)

    // fork: a different batch under sequence 2 (a replay with new contents)
    const forged = seal(batchOf('node-a', 2, batchDigest(chain.sealed[0]!.batch), [{ offset: 0, line: Buffer.from('{"forged":true}') }]), key)
    const fork = await push(c.url, [forged])
    t.equal(fork.status, 409)
    t.equal(errorOf(fork).code, 'already_exists')
    t.match(errorOf(fork).message, /fork: sequence 2 .* already holds a different batch/)

    // gap: sequence 5 while 4 is expected
    const ahead = new Chain('node-a', key)
    ahead.grow(4)
    const gap = await push(c.url, [ahead.next(['{"a":5}'])])
    t.equal(gap.status, 400)
    t.equal(errorOf(gap).code, 'out_of_range')
    t.match(errorOf(gap).message, /expects sequence 4, got 5/)

    // broken link: sequence 4 whose prev_digest is not the digest of 3
    const unlinked = seal(batchOf('node-a', 4, Buffer.alloc(32, 1), []), key)
    const link = await push(c.url, [unlinked])
    t.equal(link.status, 400)
    t.equal(errorOf(link).code, 'failed_precondition')
    t.match(errorOf(link).message, /prev_digest/)

    t.same(await storedBytes(c.dir), before)
    t.same(c.stats().rejected, { already_exists: 1, out_of_range: 1, failed_precondition: 1 })
  })

  t.test(`${kind} store: signatures: unknown key, bad signature, wrong algorithm`, async (t) => {
    const c = await collector(t, {}, await freshStore(t, kind))
    const foreign = new Chain('node-a', stranger).grow(1)
    const unknown = await push(c.url, foreign)
    t.equal(unknown.status, 401)
    t.equal(errorOf(unknown).code, 'unauthenticated')
    t.match(errorOf(unknown).message, new RegExp(stranger.keyId))

    const chain = new Chain('node-a', key)
    const [one] = chain.grow(1)
    const altered = { ...one!, batch: Buffer.from(one!.batch) }
    altered.batch[altered.batch.length - 3]! ^= 1
    const bad = await push(c.url, [altered])
    t.equal(bad.status, 403)
    t.equal(errorOf(bad).code, 'permission_denied')

    // signed by a stranger but claiming our key id
    const impostor = { ...new Chain('node-a', stranger).grow(1)[0]!, keyId: key.keyId }
    t.equal((await push(c.url, [impostor])).status, 403)

    const rsa = await push(c.url, [{ ...one!, algorithm: 'rsa' }])
    t.equal(errorOf(rsa).code, 'invalid_argument')
    t.notOk((await c.store.streams()).includes('node-a'), 'nothing stored')
    t.equal((await push(c.url, [one!])).status, 200)
  })

  t.test(`${kind} store: a rejection mid-request keeps the earlier batches and says so`, async (t) => {
    const c = await collector(t, {}, await freshStore(t, kind))
    const chain = new Chain('node-a', key)
    const [a, b, d] = chain.grow(3)
    const altered = { ...d!, batch: Buffer.from(d!.batch) }
    altered.batch[5]! ^= 1
    const res = await push(c.url, [a!, b!, altered])
    t.equal(errorOf(res).code, 'permission_denied')
    t.match(errorOf(res).message, /2 batch\(es\) before it .* accepted; stream head is 2/)
    t.equal((await c.store.head('node-a'))?.sequence, 2)
  })
}

t.test('one stream per request; batch content problems name the field', async (t) => {
  const c = await collector(t)
  const mixed = await push(c.url, [new Chain('node-a', key).grow(1)[0]!, new Chain('node-b', key).grow(1)[0]!])
  t.equal(errorOf(mixed).code, 'invalid_argument')
  t.match(errorOf(mixed).message, /request\.batches\[1\]: stream "node-b" differs/)
  const escape = await push(c.url, [new Chain('../etc', key).grow(1)[0]!])
  t.equal(errorOf(escape).code, 'invalid_argument')
  t.match(errorOf(escape).message, /stream_id/)
  const empty = await push(c.url, [])
  t.match(errorOf(empty).message, /request\.batches: empty/)
  const junk = await post(c.url, PUSH_BATCH_PATH, Buffer.from([0xff, 0xff, 0xff]))
  t.equal(errorOf(junk).code, 'invalid_argument')
})

// Both encodings the collector inflates: zstd (the agent's default) and gzip.
const COMPRESSORS = {
  zstd: { compress: (b: Uint8Array) => zstdCompressSync(b), stream: () => createZstdCompress() },
  gzip: { compress: (b: Uint8Array) => gzip(b), stream: () => createGzip({ level: 9 }) },
}

for (const [encoding, z] of Object.entries(COMPRESSORS)) {
  t.test(`${encoding} bodies are accepted; a ${encoding} bomb stops at the decompressed limit`, async (t) => {
    const c = await collector(t, { maxDecompressedBytes: 1024 * 1024 })
    const chain = new Chain('node-a', key)
    const res = await post(c.url, PUSH_BATCH_PATH, z.compress(encodePushBatchRequest(chain.grow(3))), { 'content-encoding': encoding })
    t.equal(res.status, 200)
    t.equal(decodePushBatchResponse(res.body).acknowledgedSequence, 3)

    // 256 MiB of zeros, a few hundred KiB compressed at most
    const bomb = await new Promise<Buffer>((resolve) => {
      const stream = z.stream()
      const out: Buffer[] = []
      stream.on('data', (d: Buffer) => out.push(d))
      stream.on('end', () => resolve(Buffer.concat(out)))
      const zeros = Buffer.alloc(1024 * 1024)
      for (let i = 0; i < 256; i++) stream.write(zeros)
      stream.end()
    })
    const rss = process.memoryUsage().rss
    const blown = await post(c.url, PUSH_BATCH_PATH, bomb, { 'content-encoding': encoding })
    t.equal(blown.status, 429)
    t.equal(errorOf(blown).code, 'resource_exhausted')
    t.match(errorOf(blown).message, `${encoding} body inflates past the limit of 1048576 bytes`)
    t.ok(process.memoryUsage().rss - rss < 128 * 1024 * 1024, 'the bomb was not inflated in memory')

    const notCompressed = await post(c.url, PUSH_BATCH_PATH, Buffer.from('plain text'), { 'content-encoding': encoding })
    t.equal(errorOf(notCompressed).code, 'invalid_argument')
    t.match(errorOf(notCompressed).message, `not valid ${encoding}`)
  })
}

t.test('other content encodings are refused, naming the ones that work', async (t) => {
  const c = await collector(t)
  const brotli = await post(c.url, PUSH_BATCH_PATH, Buffer.from('x'), { 'content-encoding': 'br' })
  t.equal(errorOf(brotli).code, 'unimplemented')
  t.match(errorOf(brotli).message, /send zstd, gzip or identity/)
  t.equal(brotli.status, 501)
  t.equal(brotli.headers['accept-encoding'], 'zstd, gzip', 'the Connect spec: an unsupported encoding is answered with the ones supported')
})

t.test('request limits: body size, batches per request, records per batch, line length', async (t) => {
  const base = t.testdir({ a: {}, b: {} })
  const c = await collector(t, { maxBatchesPerRequest: 4, maxRecordsPerBatch: 5, maxLineBytes: 100 }, join(base, 'a'))
  const chain = new Chain('node-a', key)
  const tooMany = await push(c.url, chain.grow(5))
  t.equal(tooMany.status, 429)
  t.match(errorOf(tooMany).message, /request\.batches: more than 4 batches per request, over the limit/)

  const small = await collector(t, { maxBodyBytes: 1024 }, join(base, 'b'))
  const huge = await push(small.url, [new Chain('node-a', key).next(['x'.repeat(2000)])])
  t.equal(huge.status, 429)
  t.match(errorOf(huge).message, /over the limit of 1024/)
  // Headers announcing an oversized body, and only part of it: answered at once, and the connection closed.
  const socket = connect(small.port, '127.0.0.1')
  socket.end(`POST ${PUSH_BATCH_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/proto\r\ncontent-length: 2000\r\n\r\n${'x'.repeat(100)}`)
  const answer: Buffer[] = []
  socket.on('data', (c: Buffer) => answer.push(c))
  await once(socket, 'close')
  t.match(Buffer.concat(answer).toString(), /^HTTP\/1\.1 429 [^]*\r\nconnection: close\r\n/i, 'the rest of an oversized body is not read')

  const records = await push(c.url, new Chain('node-a', key).grow(1, 6))
  t.equal(errorOf(records).code, 'resource_exhausted')
  t.match(errorOf(records).message, /batch\.records: more than 5 records per batch, over the limit/)
  const line = await push(c.url, [new Chain('node-a', key).next(['z'.repeat(101)])])
  t.match(errorOf(line).message, /records\[0\]\.line: 101 bytes, over the limit of 100/)
  t.notOk(readdirSync(join(c.dir, 'streams')).includes('node-a'), 'nothing stored')
  t.notOk(readdirSync(join(small.dir, 'streams')).includes('node-a'), 'nothing stored')
})

t.test('protocol: content type, method, path', async (t) => {
  const c = await collector(t)
  const body = encodePushBatchRequest(new Chain('node-a', key).grow(1))
  const xml = await post(c.url, PUSH_BATCH_PATH, body, { 'content-type': 'application/xml' })
  t.equal(xml.status, 415)
  t.match(errorOf(xml).message, /send application\/proto or application\/json/)
  const get = await post(c.url, PUSH_BATCH_PATH, Buffer.alloc(0), {}, 'GET')
  t.equal(get.status, 405)
  t.equal(get.headers.allow, 'POST')
  const other = await post(c.url, '/auditrail.v1.CollectorService/DeleteEverything', body)
  t.equal(other.status, 404)
  t.equal(errorOf(other).code, 'unimplemented')
  t.equal((await post(c.url, '/livez', Buffer.alloc(0), {}, 'GET')).status, 200)
  t.equal((await post(c.url, '/readyz', Buffer.alloc(0), {}, 'GET')).status, 200)
})

t.test('per-stream rate limit answers 429 with Retry-After; other streams are still served', async (t) => {
  const c = await collector(t, { streamRequestsPerSecond: 0.5, streamBurst: 2 })
  const chain = new Chain('node-a', key)
  t.equal((await push(c.url, chain.grow(1))).status, 200)
  t.equal((await push(c.url, chain.grow(1))).status, 200)
  const limited = await push(c.url, chain.grow(1))
  t.equal(limited.status, 429)
  t.equal(errorOf(limited).code, 'resource_exhausted')
  t.equal(limited.headers['retry-after'], '2')
  t.equal((await c.store.head('node-a'))?.sequence, 2, 'the limited batch was not stored')
  t.equal((await push(c.url, new Chain('node-b', key).grow(1))).status, 200)
})

for (const kind of STORE_KINDS) {
  t.test(`${kind} store: concurrent requests of one stream do not interleave`, async (t) => {
    const c = await collector(t, {}, await freshStore(t, kind))
    const chain = new Chain('node-a', key)
    const batches = chain.grow(40, 1)
    // the same and overlapping requests at once: every answer is success or a clean gap, never a fork
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => push(c.url, batches.slice(0, (i + 1) * 4))))
    t.ok(results.every((r) => r.status === 200), results.map((r) => r.status).join(','))
    t.equal((await c.store.head('node-a'))?.sequence, 40)
    t.equal(c.stats().acceptedBatches, 40)
    t.equal((await verifyStore(c.dir, trustOf(key))).ok, true)
    if (kind === 'file') t.same(readdirSync(join(c.dir, 'streams', 'node-a')), [segmentName(1)])
  })

  t.test(`${kind} store: restart: the store is found again and the chain continues`, async (t) => {
    const dir = await freshStore(t, kind)
    const chain = new Chain('node-a', key)
    const first = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: dir, trustedKeys: trustOf(key) })
    await push(first.url, chain.grow(2))
    await first.close()
    const second = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: dir, trustedKeys: trustOf(key) })
    t.teardown(() => second.close())
    t.equal(decodePushBatchResponse((await push(second.url, chain.sealed.slice(1, 2))).body).acknowledgedSequence, 2)
    t.equal(decodePushBatchResponse((await push(second.url, chain.grow(1))).body).acknowledgedSequence, 3)
  })
}

t.test('a client that sends its headers slowly is cut off while others are served', async (t) => {
  const c = await collector(t, { headersTimeoutMs: 300, requestTimeoutMs: 600 })
  const socket = connect(c.port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(`POST ${PUSH_BATCH_PATH} HTTP/1.1\r\nHost: x\r\n`) // and never the rest
  const closed = once(socket, 'close')
  const answer: Buffer[] = []
  socket.on('data', (d: Buffer) => answer.push(d))
  socket.on('error', () => {})
  t.equal((await push(c.url, new Chain('node-a', key).grow(1))).status, 200, 'another client is served meanwhile')
  await closed
  t.match(Buffer.concat(answer).toString(), /^HTTP\/1\.1 408/)
})

/** `count` connections from `localAddress` that never send a byte; the ones the collector closes are counted. */
async function idleConnections(t: Test, port: number, localAddress: string, count: number) {
  const sockets = await Promise.all(Array.from({ length: count }, async () => {
    const socket = connect({ port, host: '127.0.0.1', localAddress })
    socket.on('error', () => {})
    await once(socket, 'connect')
    return socket
  }))
  t.teardown(() => sockets.forEach((s) => s.destroy()))
  return { open: () => sockets.filter((s) => !s.closed).length }
}

t.test('one address holding idle connections cannot lock agents out: a cap per address, idle ones closed when the table fills', async (t) => {
  const c = await collector(t, { maxConnections: 40, maxConnectionsPerAddress: 10 })
  const chain = new Chain('node-a', key)
  const hog = await idleConnections(t, c.port, '127.0.0.2', 40)
  await new Promise((r) => setTimeout(r, 200))
  t.equal(hog.open(), 10, 'ten kept, the rest closed at once')
  t.equal(await push(c.url, chain.grow(1)).then((r) => r.status, (err: Error) => err.message), 200, 'an agent gets in')

  // Four more addresses fill the table; once they have idled a second, an agent's new connection makes room.
  const others = await Promise.all(['127.0.0.3', '127.0.0.4', '127.0.0.5'].map((a) => idleConnections(t, c.port, a, 10)))
  await new Promise((r) => setTimeout(r, 1100))
  const next = chain.grow(1)
  let status = 0
  for (let attempt = 0; attempt < 3 && status !== 200; attempt++) status = await push(c.url, next).then((r) => r.status, () => 0)
  t.equal(status, 200, 'served after at most a retry')
  t.ok(hog.open() + others.reduce((n, o) => n + o.open(), 0) < 40, 'idle connections were closed')
})
