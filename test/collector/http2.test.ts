// HTTP/2 beside HTTP/1.1 on the collector's one port: h2c with prior knowledge
// in plaintext, ALPN under TLS; the official Connect client over HTTP/2; and
// every limit the HTTP/1.1 path has (body, decompression, rate, connections per
// address, timeouts) holding on HTTP/2 too.
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { request as httpsRequest } from 'node:https'
import { connect as http2Connect, constants, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2'
import { connect as netConnect } from 'node:net'
import { promisify } from 'node:util'
import { gzipSync } from 'node:zlib'
import { Code, ConnectError } from '@connectrpc/connect'
import { createConnectTransport } from '@connectrpc/connect-node'
import t, { type Test } from 'tap'
import { MAX_CONCURRENT_STREAMS } from '../../collector/transport.ts'
import { signStreamHeadRequest } from '../../proto/signed-messages.ts'
import { decodePushBatchResponse, encodePushBatchRequest, GET_STREAM_HEAD_PATH, PUSH_BATCH_PATH } from '../../proto/wire.ts'
import { makeCa, makeLeaf, type Pem } from '../agent/ship/tls-certificates.ts'
import { collectorClient } from './connect-client.ts'
import { Chain, headRequest, loopbackCollector, post, testKey, trustOf } from './fixtures.ts'

const key = testKey()

function session(t: Test, url: string, ca?: Pem, client?: Pem): Promise<ClientHttp2Session> {
  const s = http2Connect(url, ca ? { ca: ca.cert, ...(client ? { cert: client.cert, key: client.key } : {}) } : {})
  s.on('error', () => {})
  t.teardown(() => s.destroy())
  return once(s, 'connect').then(() => s)
}

interface H2Answer { status: number; headers: IncomingHttpHeaders; body: Buffer }

/** One HTTP/2 request; rejects with the stream's reset code when the server resets it. */
function h2post(s: ClientHttp2Session, path: string, body: Uint8Array | undefined, headers: Record<string, string> = {}): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const stream = s.request({ ':method': 'POST', ':path': path, 'content-type': 'application/proto', ...headers }, { endStream: body === undefined })
    let answer: IncomingHttpHeaders = {}
    const chunks: Buffer[] = []
    stream.on('response', (h) => (answer = h))
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('error', () => {})
    stream.on('close', () => {
      if (answer[':status'] === undefined) return reject(Object.assign(new Error(`stream reset with code ${stream.rstCode}`), { rstCode: stream.rstCode }))
      resolve({ status: Number(answer[':status']), headers: answer, body: Buffer.concat(chunks) })
    })
    if (body !== undefined) stream.end(body)
  })
}

function code(a: H2Answer): string {
  return (JSON.parse(a.body.toString()) as { code: string }).code
}

t.test('plaintext: h2c with prior knowledge and HTTP/1.1 on the same port', async (t) => {
  const c = await loopbackCollector(t, key)
  const s = await session(t, c.url)
  const chain = new Chain('node-a', key)
  const pushed = await h2post(s, PUSH_BATCH_PATH, encodePushBatchRequest(chain.grow(2)))
  t.equal(pushed.status, 200)
  t.same(decodePushBatchResponse(pushed.body), { streamId: 'node-a', acknowledgedSequence: 2 })
  t.equal(s.remoteSettings.maxConcurrentStreams, MAX_CONCURRENT_STREAMS, 'the server bounds the requests in flight per connection')
  t.equal(s.remoteSettings.initialWindowSize, 1024 * 1024, 'and lets a 4 MiB body flow without a window update every 64 KiB')
  // Several requests at once on the one connection.
  const heads = await Promise.all(Array.from({ length: 8 }, () => h2post(s, GET_STREAM_HEAD_PATH, headRequest('node-a', key))))
  t.same(heads.map((h) => h.status), Array(8).fill(200))
  const h1 = await post(c.url, PUSH_BATCH_PATH, encodePushBatchRequest(chain.grow(1)))
  t.equal(h1.status, 200, 'HTTP/1.1 beside it')
  t.equal(decodePushBatchResponse(h1.body).acknowledgedSequence, 3)

  const curl = await promisify(execFile)('curl', ['-sS', '--http2-prior-knowledge', '-w', '\n%{http_version}', '-H', 'content-type: application/json', '-d', JSON.stringify({ batches: [] }), `${c.url}${PUSH_BATCH_PATH}`])
  t.match(curl.stdout, /request\.batches: empty[^]*\n2$/, 'curl --http2-prior-knowledge gets the Connect error over HTTP/2')
})

t.test('TLS: ALPN offers h2 and http/1.1; client certificates still bind streams over HTTP/2', async (t) => {
  const dir = t.testdir()
  const ca = makeCa(dir, 'ca')
  const server = makeLeaf(dir, 'server', ca, 'serverAuth')
  const clientA = makeLeaf(dir, 'client-a', ca, 'clientAuth', 'node-a')
  const c = await loopbackCollector(t, key, { tls: { cert: server.cert, key: server.key, ca: ca.cert, requireClientCert: true } })
  const s = await session(t, c.url, ca, clientA)
  t.equal(s.alpnProtocol, 'h2')
  t.equal((await h2post(s, PUSH_BATCH_PATH, encodePushBatchRequest(new Chain('node-a', key).grow(1)))).status, 200, 'its own stream')
  const other = await h2post(s, PUSH_BATCH_PATH, encodePushBatchRequest(new Chain('node-b', key).grow(1)))
  t.equal(code(other), 'permission_denied', 'another stream: the certificate is read over HTTP/2 as over HTTP/1.1')

  const req = httpsRequest(new URL(GET_STREAM_HEAD_PATH, c.url), { method: 'POST', ca: ca.cert, cert: clientA.cert, key: clientA.key, headers: { 'content-type': 'application/proto' } })
  req.end(headRequest('node-a', key))
  const [res] = await once(req, 'response') as [import('node:http').IncomingMessage]
  res.resume()
  t.equal(res.statusCode, 200, 'HTTP/1.1 under TLS on the same port')
  t.equal(res.httpVersion, '1.1')
})

for (const tls of [false, true]) {
  for (const useBinaryFormat of [true, false]) {
    t.test(`the official Connect client over HTTP/2 (${tls ? 'TLS' : 'h2c'}, ${useBinaryFormat ? 'binary' : 'JSON'})`, async (t) => {
      const dir = t.testdir()
      const ca = tls ? makeCa(dir, 'ca') : undefined
      const server = ca ? makeLeaf(dir, 'server', ca, 'serverAuth') : undefined
      const c = await loopbackCollector(t, key, server ? { tls: { cert: server.cert, key: server.key } } : {})
      const client = collectorClient(createConnectTransport({ baseUrl: c.url, httpVersion: '2', useBinaryFormat, ...(ca ? { nodeOptions: { ca: ca.cert } } : {}) }))
      const chain = new Chain('node-a', key)
      t.equal((await client.pushBatch({ batches: chain.grow(3) })).acknowledgedSequence, 3n)
      const issued = Date.now()
      const head = await client.getStreamHead({ streamId: 'node-a', keyId: key.keyId, issuedUnixMs: BigInt(issued), signature: signStreamHeadRequest('node-a', issued, key.privateKey) })
      t.same(Buffer.from(head.head!.batch), Buffer.from(chain.sealed[2]!.batch))
      const gap = await client.pushBatch({ batches: [chain.grow(2)[1]!] }).then(() => undefined, (err: unknown) => err)
      t.equal((gap as ConnectError).code, Code.OutOfRange)
      t.match((gap as ConnectError).rawMessage, /gap: stream node-a expects sequence 4, got 5/)
    })
  }
}

t.test('limits on HTTP/2: body size and decompression refuse the stream, not the connection', async (t) => {
  const c = await loopbackCollector(t, key, { limits: { maxBodyBytes: 1024, maxDecompressedBytes: 4096 } })
  const s = await session(t, c.url)
  const big = await h2post(s, PUSH_BATCH_PATH, encodePushBatchRequest([new Chain('node-a', key).next(['x'.repeat(2000)])]))
  t.equal(big.status, 429)
  t.match(JSON.parse(big.body.toString()), { code: 'resource_exhausted', message: /over the limit of 1024/ })
  const bomb = await h2post(s, PUSH_BATCH_PATH, gzipSync(Buffer.alloc(100_000)), { 'content-encoding': 'gzip' })
  t.match(JSON.parse(bomb.body.toString()), { code: 'resource_exhausted', message: /inflates past the limit of 4096/ })
  // A body that never ends, over the limit: answered, and only its stream reset.
  const endless = s.request({ ':method': 'POST', ':path': PUSH_BATCH_PATH, 'content-type': 'application/proto' })
  endless.on('error', () => {})
  const closed = once(endless, 'close')
  endless.write(Buffer.alloc(2048))
  const [headers] = await once(endless, 'response') as [IncomingHttpHeaders]
  t.equal(headers[':status'], 429)
  endless.resume()
  await closed
  t.equal(endless.rstCode, constants.NGHTTP2_NO_ERROR, 'the stream is reset without error once answered (RFC 9113 §8.1)')
  t.equal((await h2post(s, PUSH_BATCH_PATH, encodePushBatchRequest(new Chain('node-a', key).grow(1)))).status, 200, 'the connection still serves')
})

t.test('limits on HTTP/2: the per-stream rate', async (t) => {
  const c = await loopbackCollector(t, key, { limits: { streamRequestsPerSecond: 0.5, streamBurst: 1 } })
  const s = await session(t, c.url)
  const chain = new Chain('node-a', key)
  t.equal((await h2post(s, PUSH_BATCH_PATH, encodePushBatchRequest(chain.grow(1)))).status, 200)
  const limited = await h2post(s, PUSH_BATCH_PATH, encodePushBatchRequest(chain.grow(1)))
  t.equal(limited.status, 429)
  t.equal(limited.headers['retry-after'], '2')
})

t.test('limits on HTTP/2: connections per address count HTTP/2 connections', async (t) => {
  const c = await loopbackCollector(t, key, { limits: { maxConnectionsPerAddress: 2 } })
  const held = [await session(t, c.url), await session(t, c.url)]
  const third = http2Connect(c.url)
  third.on('error', () => {})
  t.teardown(() => third.destroy())
  await once(third, 'close')
  t.pass('the third is closed as it arrives')
  t.equal((await h2post(held[0]!, GET_STREAM_HEAD_PATH, headRequest('node-a', key))).status, 200, 'the two held still serve')
})

t.test('timeouts on HTTP/2: a body that stalls, an idle connection, a connection that never finishes its preface', async (t) => {
  const c = await loopbackCollector(t, key, { limits: { requestTimeoutMs: 500, headersTimeoutMs: 300, keepAliveTimeoutMs: 300 } })
  const s = await session(t, c.url)
  const started = performance.now()
  const stalled = s.request({ ':method': 'POST', ':path': PUSH_BATCH_PATH, 'content-type': 'application/proto' })
  stalled.on('error', () => {})
  stalled.write(Buffer.alloc(10))
  await once(stalled, 'close', { signal: AbortSignal.timeout(5000) })
  const ms = performance.now() - started
  t.ok(ms >= 450 && ms < 3000, `a stalled body is cut off after the request timeout (${Math.round(ms)} ms)`)

  const idle = await session(t, c.url)
  const idleStart = performance.now()
  await once(idle, 'close', { signal: AbortSignal.timeout(5000) })
  t.ok(performance.now() - idleStart < 3000, 'an idle HTTP/2 connection is closed')

  const half = netConnect(c.port, '127.0.0.1')
  half.on('error', () => {})
  half.write('PRI * HTTP/2.0\r\n')
  const halfStart = performance.now()
  await once(half, 'close', { signal: AbortSignal.timeout(5000) })
  t.ok(performance.now() - halfStart < 3000, 'half a preface, then silence: closed')
})
