// The gRPC protocol, with the client most operators reach for: @grpc/grpc-js,
// its service loaded from the contract (proto/auditrail/v2/collector.proto) by
// @grpc/proto-loader. Plaintext (h2c) and TLS, plain and gzip-compressed
// messages, and the same codes as Connect for a refusal.
import { once } from 'node:events'
import { connect as http2Connect, type IncomingHttpHeaders } from 'node:http2'
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import t, { type Test } from 'tap'
import { signStreamHeadRequest } from '../../proto/signed-messages.ts'
import { encodePushBatchRequest, PUSH_BATCH_PATH, type SealedBatch } from '../../proto/wire.ts'
import { makeCa, makeLeaf } from '../agent/ship/tls-certificates.ts'
import { Chain, loopbackCollector, testKey, trustOf } from './fixtures.ts'

const key = testKey()
const stranger = testKey()

const definition = protoLoader.loadSync(fileURLToPath(new URL('../../proto/auditrail/v2/collector.proto', import.meta.url)), { longs: String, defaults: true })
const CollectorService = (grpc.loadPackageDefinition(definition) as unknown as { auditrail: { v2: { CollectorService: grpc.ServiceClientConstructor } } }).auditrail.v2.CollectorService

interface GrpcClient extends grpc.Client {
  pushBatch(request: { batches: SealedBatch[] }, callback: grpc.requestCallback<{ streamId: string; acknowledgedSequence: string }>): void
  getStreamHead(request: { streamId: string; keyId: string; issuedUnixMs: string; signature: Buffer }, callback: grpc.requestCallback<{ head: SealedBatch | null }>): void
}

function client(t: Test, port: number, credentials = grpc.credentials.createInsecure(), options: grpc.ClientOptions = {}): GrpcClient {
  const c = new CollectorService(`127.0.0.1:${port}`, credentials, options) as unknown as GrpcClient
  t.teardown(() => c.close())
  return c
}

function call<Res>(fn: (callback: grpc.requestCallback<Res>) => void): Promise<Res> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res!))))
}

function failure(p: Promise<unknown>): Promise<grpc.ServiceError> {
  return p.then(() => { throw new Error('the call succeeded; a refusal was expected') }, (err: grpc.ServiceError) => err)
}

function head(c: GrpcClient, streamId: string, signer = key) {
  const issued = Date.now()
  return call<{ head: SealedBatch | null }>((cb) => c.getStreamHead({ streamId, keyId: signer.keyId, issuedUnixMs: String(issued), signature: signStreamHeadRequest(streamId, issued, signer.privateKey) }, cb))
}

for (const compression of [false, true]) {
  t.test(`@grpc/grpc-js over h2c${compression ? ', gzip-compressed messages' : ''}: push, re-send, read the head, and each refusal's code`, async (t) => {
    const c = await loopbackCollector(t, key)
    const g = client(t, c.port, undefined, compression ? { 'grpc.default_compression_algorithm': grpc.compressionAlgorithms.gzip } : {})
    const chain = new Chain('node-a', key)
    t.same(await call((cb) => g.pushBatch({ batches: chain.grow(3) }, cb)), { streamId: 'node-a', acknowledgedSequence: '3' })
    t.same(await call((cb) => g.pushBatch({ batches: chain.sealed.slice(1) }, cb)), { streamId: 'node-a', acknowledgedSequence: '3' }, 'a re-send is acknowledged again')
    t.same(Buffer.from((await head(g, 'node-a')).head!.batch), Buffer.from(chain.sealed[2]!.batch))
    t.equal((await head(g, 'node-b')).head, null, 'no head for a stream not held')

    const fork = await failure(call((cb) => g.pushBatch({ batches: [new Chain('node-a', key).next(['another line'])] }, cb)))
    t.equal(fork.code, grpc.status.ALREADY_EXISTS)
    t.match(fork.details, /fork: sequence 1 of stream node-a already holds a different batch/)
    const gap = await failure(call((cb) => g.pushBatch({ batches: [chain.grow(2)[1]!] }, cb)))
    t.equal(gap.code, grpc.status.OUT_OF_RANGE)
    const untrusted = await failure(head(g, 'node-a', stranger))
    t.equal(untrusted.code, grpc.status.UNAUTHENTICATED)
    t.match(untrusted.details, /is not a trusted key/)
    const empty = await failure(call((cb) => g.pushBatch({ batches: [] }, cb)))
    t.equal(empty.code, grpc.status.INVALID_ARGUMENT)
    t.match(empty.details, /request\.batches: empty; send at least one SealedBatch/)
  })
}

t.test('@grpc/grpc-js under TLS (ALPN h2), and a limit: the body size is RESOURCE_EXHAUSTED', async (t) => {
  const dir = t.testdir()
  const ca = makeCa(dir, 'ca')
  const server = makeLeaf(dir, 'server', ca, 'serverAuth')
  const c = await loopbackCollector(t, key, { tls: { cert: server.cert, key: server.key }, limits: { maxBodyBytes: 4096 } })
  const g = client(t, c.port, grpc.credentials.createSsl(ca.cert))
  const chain = new Chain('node-a', key)
  t.same(await call((cb) => g.pushBatch({ batches: chain.grow(1) }, cb)), { streamId: 'node-a', acknowledgedSequence: '1' })
  const big = await failure(call((cb) => g.pushBatch({ batches: [chain.next(['x'.repeat(8000)])] }, cb)))
  t.equal(big.code, grpc.status.RESOURCE_EXHAUSTED, big.details)
  t.match(big.details, /over the limit of 4096/)
})

t.test('gRPC calls are counted in /metrics under their protocol', async (t) => {
  const c = await loopbackCollector(t, key, { metricsListen: '127.0.0.1:0' })
  const g = client(t, c.port)
  await call((cb) => g.pushBatch({ batches: new Chain('node-a', key).grow(1) }, cb))
  await failure(call((cb) => g.pushBatch({ batches: [new Chain('node-a', key).next(['another line'])] }, cb)))
  const text = await (await fetch(`${c.metricsUrl}/metrics`)).text()
  t.match(text, /^auditrail_collector_requests_total\{procedure="PushBatch",protocol="grpc",codec="proto",code="ok",http="2"\} 1$/m)
  t.match(text, /^auditrail_collector_requests_total\{procedure="PushBatch",protocol="grpc",codec="proto",code="already_exists",http="2"\} 1$/m)
  t.match(text, /^auditrail_collector_batches_refused_total\{reason="fork"\} 1$/m)
})

t.test('gRPC framing: a body that is not exactly one message, and an unknown message compression, are refused in the trailers', async (t) => {
  const c = await loopbackCollector(t, key)
  const s = http2Connect(c.url)
  t.teardown(() => s.destroy())
  const send = async (body: Buffer, headers: Record<string, string> = {}) => {
    const stream = s.request({ ':method': 'POST', ':path': PUSH_BATCH_PATH, 'content-type': 'application/grpc', te: 'trailers', ...headers })
    stream.end(body)
    const [response] = await once(stream, 'response') as [IncomingHttpHeaders]
    stream.resume()
    const [trailers] = await once(stream, 'trailers') as [IncomingHttpHeaders]
    return { response, trailers }
  }
  const message = Buffer.from(encodePushBatchRequest(new Chain('node-a', key).grow(1)))
  const prefix = (flag: number, length: number) => Buffer.from([flag, length >>> 24, (length >>> 16) & 255, (length >>> 8) & 255, length & 255])
  const two = await send(Buffer.concat([prefix(0, message.length), message, prefix(0, 0)]))
  t.equal(two.response[':status'], 200)
  t.equal(two.response['content-type'], 'application/grpc')
  t.equal(two.trailers['grpc-status'], String(grpc.status.INVALID_ARGUMENT))
  t.match(decodeURIComponent(String(two.trailers['grpc-message'])), /does not hold exactly one message/)
  const brotli = await send(Buffer.concat([prefix(1, message.length), message]), { 'grpc-encoding': 'br' })
  t.equal(brotli.trailers['grpc-status'], String(grpc.status.UNIMPLEMENTED))
  t.equal(brotli.response['grpc-accept-encoding'], 'zstd, gzip')
  const ok = await send(Buffer.concat([prefix(0, message.length), message]))
  t.equal(ok.trailers['grpc-status'], '0')
})
