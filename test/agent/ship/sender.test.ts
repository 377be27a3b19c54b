// The sender against a real HTTP server on 127.0.0.1 that misbehaves the way
// collectors do: 503, 429 with Retry-After, hanging past the timeout, resetting
// the connection mid-response. The sender retries the same bytes and never skips.
import { generateKeyPairSync } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { gunzipSync, zstdDecompressSync } from 'node:zlib'
import t, { type Test } from 'tap'
import { Agent } from 'undici'
import { keyIdOf } from '../../../proto/keys.ts'
import { BatchBody, decodeBatch, decodePushBatchRequest, encodePushBatchResponse } from '../../../proto/wire.ts'
import { Sealer, type BatchDraft, type SealedItem } from '../../../agent/ship/sealer.ts'
import { backoffMs, Sender } from '../../../agent/ship/sender.ts'
import { CollectorChoice, type CollectorSwitch } from '../../../agent/ship/collectors.ts'

const { privateKey, publicKey } = generateKeyPairSync('ed25519')
const key = { privateKey, publicKey, keyId: keyIdOf(publicKey) }

function draft(n: number): BatchDraft {
  return {
    path: '/var/log/audit.log',
    identity: { device: 1, inode: 2, fingerprint: Buffer.alloc(32), fingerprintLength: 256 },
    order: { liveAfter: 0 },
    startOffset: n * 10,
    endOffset: n * 10 + 10,
    endOfFile: false,
    body: BatchBody.of([{ offset: n * 10, line: Buffer.from(`{"n":${n}}`) }]),
    lineBytes: 8,
    newestEventMs: 0,
    openedAt: 0,
  }
}

type Behaviour = (req: IncomingMessage, res: ServerResponse, sequences: number[]) => void

/** A collector stand-in that records every batch it accepts, with a scripted misbehaviour per request; stand-ins given one `accepted` share a store. */
async function collector(t: Test, script: Behaviour[], accepted: number[] = [], received: Buffer[] = []) {
  let requests = 0
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    let body = Buffer.concat(chunks)
    if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body)
    if (req.headers['content-encoding'] === 'zstd') body = zstdDecompressSync(body)
    const sealed = decodePushBatchRequest(body)
    for (const s of sealed) received.push(Buffer.from(s.batch))
    const sequences = sealed.map((s) => decodeBatch(s.batch).sequence)
    const behaviour = script[requests++]
    if (behaviour) return behaviour(req, res, sequences)
    for (const s of sequences) if (s === (accepted.at(-1) ?? 0) + 1) accepted.push(s)
    res.writeHead(200, { 'content-type': 'application/proto' }).end(encodePushBatchResponse({ streamId: 'node-a', acknowledgedSequence: accepted.at(-1) ?? 0 }))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()) }))
  const port = (server.address() as { port: number }).port
  return { url: `http://127.0.0.1:${port}`, accepted, requests: () => requests, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()) }) }
}

function sender(url: string | string[], acked: SealedItem[], failures: string[], timeoutMs = 2000, onSwitch?: (c: CollectorSwitch) => void, compression: 'zstd' | 'gzip' = 'zstd') {
  return new Sender({
    collectors: new CollectorChoice(typeof url === 'string' ? [url] : url, 200),
    streamId: 'node-a',
    dispatcher: new Agent({ keepAliveTimeout: 1000 }),
    timeoutMs,
    maxUnackedBytes: 1024 * 1024,
    maxBatchesPerRequest: 2,
    maxRequestBytes: 1024 * 1024,
    compression,
    retryInitialMs: 10,
    retryMaxMs: 50,
    onAck: (_last, items) => void acked.push(...items),
    onFailure: (err) => void failures.push(err.reason),
    ...(onSwitch ? { onSwitch } : {}),
  })
}



t.test('retries through 503, 429 with Retry-After, a hang and a reset, in order, skipping nothing', async (t) => {
  const script: Behaviour[] = [
    (_q, res) => res.writeHead(503, { 'content-type': 'application/json' }).end('{"code":"unavailable","message":"draining"}'),
    (_q, res) => res.writeHead(429, { 'retry-after': '1', 'content-type': 'application/json' }).end('{"code":"resource_exhausted","message":"slow down"}'),
    () => {}, // hang: never answer
    (req) => req.socket.destroy(),
  ]
  const c = await collector(t, script)
  const acked: SealedItem[] = []
  const failures: string[] = []
  const s = sender(c.url, acked, failures, 500)
  const sealer = new Sealer('node-a', 'node-a', { nextSequence: 1, headDigest: Buffer.alloc(0) }, key)
  const started = Date.now()
  for (let i = 0; i < 5; i++) s.enqueue(sealer.seal(draft(i), key, Date.now()))
  await s.idle()
  await s.stop()
  t.same(failures, ['unavailable', 'resource_exhausted', 'timeout', 'transport'])
  t.ok(Date.now() - started >= 1000, 'waited as long as Retry-After asked')
  t.same(c.accepted, [1, 2, 3, 4, 5], 'every batch arrived once, in order')
  t.same(acked.map((a) => a.sequence), [1, 2, 3, 4, 5])
})

t.test('compressed requests reuse one body buffer: each request carries its own batches, bytes for bytes, whether it is longer or shorter than the one before', async (t) => {
  for (const compression of ['zstd', 'gzip'] as const) {
    const received: Buffer[] = []
    // Two requests fail, so the same batches are written into the buffer again for their retry.
    const c = await collector(t, [undefined, (_q, res) => res.writeHead(503).end(), undefined, undefined, (_q, res) => res.writeHead(503).end()] as Behaviour[], [], received)
    const acked: SealedItem[] = []
    const s = sender(c.url, acked, [], 2000, undefined, compression)
    const sealer = new Sealer('node-a', 'node-a', { nextSequence: 1, headDigest: Buffer.alloc(0) }, key)
    const sent: Buffer[] = []
    for (let i = 0; i < 12; i++) {
      // Bodies over the compression threshold, their sizes going up and down; a small one (sent uncompressed) among them.
      const line = i === 6 ? '{}' : `{"n":${i},"pad":"${String.fromCharCode(97 + i).repeat(2000 + ((i * 7919) % 5) * 3000)}"}`
      const item = sealer.seal({ ...draft(i), body: BatchBody.of([{ offset: i * 10, line: Buffer.from(line) }]) }, key, Date.now())
      sent.push(Buffer.from(item.sealed.batch))
      s.enqueue(item)
    }
    await s.idle()
    await s.stop()
    t.same(c.accepted, Array.from({ length: 12 }, (_, i) => i + 1), `${compression}: every batch stored once, in order`)
    const stored = new Map(received.map((b) => [decodeBatch(b).sequence, b]))
    t.ok(sent.every((b, i) => stored.get(i + 1)?.equals(b)), `${compression}: the collector got the exact bytes sealed`)
  }
})

t.test('a batch enqueued as soon as idle() resolves is sent without waiting for another', async (t) => {
  const c = await collector(t, [])
  const acked: SealedItem[] = []
  const s = sender(c.url, acked, [])
  t.teardown(() => s.stop())
  const sealer = new Sealer('node-a', 'node-a', { nextSequence: 1, headDigest: Buffer.alloc(0) }, key)
  s.enqueue(sealer.seal(draft(0), key, Date.now()))
  // The continuation of idle() runs before the drain that resolved it has wound down.
  await s.idle().then(() => s.enqueue(sealer.seal(draft(1), key, Date.now())))
  const sent = await Promise.race([s.idle().then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 3000).unref())])
  t.ok(sent, 'the second batch was sent (it waited for a third enqueue before)')
  t.same(acked.map((a) => a.sequence), [1, 2])
})

t.test('a collector that acknowledges less than was sent gets the rest again', async (t) => {
  const c = await collector(t, [(_q, res, seqs) => res.writeHead(200).end(encodePushBatchResponse({ streamId: 'node-a', acknowledgedSequence: seqs[0]! - 1 }))])
  const acked: SealedItem[] = []
  const failures: string[] = []
  const s = sender(c.url, acked, failures)
  const sealer = new Sealer('node-a', 'node-a', { nextSequence: 1, headDigest: Buffer.alloc(0) }, key)
  s.enqueue(sealer.seal(draft(0), key, Date.now()))
  await s.idle()
  await s.stop()
  t.same(failures, ['bad_acknowledgement'])
  t.same(c.accepted, [1])
})

t.test('an acknowledgement past what the request carried moves nothing: every batch is acknowledged only once stored', async (t) => {
  // A lying collector (or anything in the middle) answers once with a sequence far ahead of the stream.
  const c = await collector(t, [(_q, res) => res.writeHead(200).end(encodePushBatchResponse({ streamId: 'node-a', acknowledgedSequence: 1_000_000_000_000 }))])
  const failures: string[] = []
  const acked: number[] = []
  const unstoredWhenAcked: number[] = []
  const s = new Sender({
    collectors: new CollectorChoice([c.url], 1000), streamId: 'node-a', dispatcher: new Agent(), timeoutMs: 2000, maxUnackedBytes: 1 << 20, maxBatchesPerRequest: 2,
    maxRequestBytes: 1 << 20, compression: 'none', retryInitialMs: 1, retryMaxMs: 5,
    onAck: (_last, items) => {
      for (const item of items) {
        acked.push(item.sequence)
        if (!c.accepted.includes(item.sequence)) unstoredWhenAcked.push(item.sequence)
      }
    },
    onFailure: (err) => void failures.push(err.reason),
  })
  const sealer = new Sealer('node-a', 'node-a', { nextSequence: 1, headDigest: Buffer.alloc(0) }, key)
  for (let i = 0; i < 6; i++) s.enqueue(sealer.seal(draft(i), key, Date.now()))
  await s.idle()
  await s.stop()
  t.same(failures, ['bad_acknowledgement'], 'the lie is a failure, and the request is sent again')
  t.same(c.accepted, [1, 2, 3, 4, 5, 6], 'the collector got every batch')
  t.same(acked, [1, 2, 3, 4, 5, 6])
  t.same(unstoredWhenAcked, [], 'no batch counted as acknowledged before the collector stored it')
})

t.test('an answer larger than any collector sends is refused while it arrives', async (t) => {
  let sent = 0
  const c = await collector(t, [(_q, res) => {
    res.writeHead(200, { 'content-type': 'application/proto' })
    const chunk = Buffer.alloc(1024 * 1024)
    // 64 MiB, no content-length: the sender must stop reading, not buffer it.
    const write = () => {
      while (sent < 64 && res.write(chunk)) sent++
      if (sent < 64 && !res.destroyed) res.once('drain', () => { sent++; write() })
      else res.end()
    }
    write()
  }])
  const acked: SealedItem[] = []
  const failures: string[] = []
  const s = sender(c.url, acked, failures)
  const sealer = new Sealer('node-a', 'node-a', { nextSequence: 1, headDigest: Buffer.alloc(0) }, key)
  s.enqueue(sealer.seal(draft(0), key, Date.now()))
  await s.idle()
  await s.stop()
  t.same(failures, ['bad_response'])
  t.ok(sent < 64, `the sender stopped reading after ${sent} MiB`)
  t.same(acked.map((a) => a.sequence), [1], 'then the batch went through')
})

t.test('backpressure: waitForRoom holds until acknowledgements free the bound', async (t) => {
  let release: (() => void) | undefined
  const c = await collector(t, [(_q, res) => { release = () => res.writeHead(503).end() }])
  const s = new Sender({
    collectors: new CollectorChoice([c.url], 1000), streamId: 'node-a', dispatcher: new Agent(), timeoutMs: 5000, maxUnackedBytes: 200, maxBatchesPerRequest: 1,
    maxRequestBytes: 1 << 20, compression: 'none', retryInitialMs: 1, retryMaxMs: 5, onAck: () => {},
  })
  const sealer = new Sealer('node-a', 'node-a', { nextSequence: 1, headDigest: Buffer.alloc(0) }, key)
  s.enqueue(sealer.seal(draft(0), key, Date.now()))
  s.enqueue(sealer.seal(draft(1), key, Date.now()))
  let roomy = false
  const room = s.waitForRoom().then(() => { roomy = true })
  await new Promise((r) => setTimeout(r, 100))
  t.equal(roomy, false, 'held while over the bound')
  release!()
  await room
  await s.idle()
  t.equal(s.unackedBytes, 0)
  await s.stop()
})

t.test('two collectors of one store: unavailable and a closed port move the agent to the other, a refusal on the merits does not, and it returns to the first', async (t) => {
  const store: number[] = []
  const a = await collector(t, [
    (_q, res) => res.writeHead(403, { 'content-type': 'application/json' }).end('{"code":"permission_denied","message":"not your stream"}'),
    (_q, res) => res.writeHead(503, { 'content-type': 'application/json' }).end('{"code":"unavailable","message":"database down"}'),
  ], store)
  const b = await collector(t, [], store)
  const acked: SealedItem[] = []
  const failures: string[] = []
  const switches: CollectorSwitch[] = []
  const s = sender([a.url, b.url], acked, failures, 2000, (c) => switches.push(c))
  const sealer = new Sealer('node-a', 'node-a', { nextSequence: 1, headDigest: Buffer.alloc(0) }, key)
  const send = async (n: number) => {
    for (let i = 0; i < n; i++) s.enqueue(sealer.seal(draft(acked.length + i), key, Date.now()))
    await s.idle()
  }
  await send(2)
  t.same(failures, ['permission_denied', 'unavailable'], 'the refusal was retried on the same collector; unavailable was not')
  t.same(switches, [{ from: a.url, to: b.url, reason: 'unavailable' }])
  t.equal(a.requests(), 2, 'the first collector saw the refusal and the 503 only')
  t.ok(b.requests() >= 1, 'the second took the batches')
  // Away from the first collector, a later request tries it again, and the agent stays once it answers.
  while (switches.length < 2) {
    await send(1)
    await new Promise((r) => setTimeout(r, 50))
  }
  t.same(switches[1], { from: b.url, to: a.url, reason: 'failback' })
  const onB = b.requests()
  await send(2)
  t.equal(b.requests(), onB, 'back on the first: the second gets nothing more')
  await a.close()
  await send(2)
  t.same(switches[2], { from: a.url, to: b.url, reason: 'transport' }, 'a closed port moves it too')
  await s.stop()
  t.same(store, acked.map((x) => x.sequence), 'the one store holds every acknowledged batch')
  t.same(store, Array.from({ length: store.length }, (_, i) => i + 1), 'each once, in order')
})

t.test('full-jitter backoff stays within its cap', async (t) => {
  for (let attempt = 1; attempt < 40; attempt++) {
    const d = backoffMs(attempt, 100, 5000)
    t.ok(d >= 0 && d <= Math.min(5000, 100 * 2 ** (attempt - 1)))
  }
})
