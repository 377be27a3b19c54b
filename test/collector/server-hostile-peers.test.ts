// The collector against peers that hold a trusted key, or none, and try to read
// or write a stream that is not theirs (issue 20): real HTTP on 127.0.0.1.
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import { request } from 'node:https'
import t, { type Test } from 'tap'
import { startCollector, type CollectorLimits, type TlsOptions } from '../../collector/server.ts'
import { verifyStore } from '../../collector/verify.ts'
import { signBytes } from '../../proto/keys.ts'
import { SEAL_ALGORITHM, signRotation, signSeal } from '../../proto/signed-messages.ts'
import {
  batchDigest,
  decodeGetStreamHeadResponse,
  decodePushBatchResponse,
  encodeBatch,
  encodeGetStreamHeadRequest,
  encodePushBatchRequest,
  GET_STREAM_HEAD_PATH,
  PUSH_BATCH_PATH,
  type SealedBatch,
} from '../../proto/wire.ts'
import { makeCa, makeLeaf } from '../agent/ship/tls-certificates.ts'
import { batchOf, Chain, headRequest, linesToRecords, post, seal, testKey, trustOf, type TestKey } from './fixtures.ts'
import { freshStore, STORE_KINDS, type StoreKind } from './stores.ts'

const nodeA = testKey()
const nodeB = testKey()

async function collector(t: Test, options: { limits?: Partial<CollectorLimits>; keys?: TestKey[]; tls?: TlsOptions; kind?: StoreKind } = {}) {
  const dir = await freshStore(t, options.kind ?? 'file')
  const c = await startCollector({
    listen: { host: '127.0.0.1', port: 0 }, storeDir: dir, trustedKeys: trustOf(...(options.keys ?? [nodeA, nodeB])),
    ...(options.limits ? { limits: options.limits } : {}), ...(options.tls ? { tls: options.tls } : {}),
  })
  t.teardown(() => c.close())
  return { ...c, dir }
}

const push = (url: string, batches: SealedBatch[]) => post(url, PUSH_BATCH_PATH, encodePushBatchRequest(batches))
const errorOf = (res: { body: Buffer }) => JSON.parse(res.body.toString()) as { code: string; message: string }

t.test('the stream head is told only to a caller that signs for the stream', async (t) => {
  const c = await collector(t)
  const chain = new Chain('node-b', nodeB)
  t.equal((await push(c.url, chain.grow(3))).status, 200)

  const own = await post(c.url, GET_STREAM_HEAD_PATH, headRequest('node-b', nodeB))
  t.equal(own.status, 200)
  t.same(Buffer.from(decodeGetStreamHeadResponse(own.body)!.batch), Buffer.from(chain.sealed[2]!.batch), 'its own key reads the head')

  const refusals: Array<[string, Uint8Array, string]> = [
    ['no credential at all', encodeGetStreamHeadRequest({ streamId: 'node-b', keyId: '', issuedUnixMs: 0, signature: Buffer.alloc(0) }), 'unauthenticated'],
    ['another trusted key', headRequest('node-b', nodeA), 'permission_denied'],
    ['an untrusted key', headRequest('node-b', testKey()), 'unauthenticated'],
    ['a request signed an hour ago (replayed)', headRequest('node-b', nodeB, Date.now() - 3_600_000), 'unauthenticated'],
    ['a signature for another stream', encodeGetStreamHeadRequest({ streamId: 'node-b', keyId: nodeB.keyId, issuedUnixMs: Date.now(), signature: signBytes(Buffer.from('node-a'), nodeB.privateKey) }), 'unauthenticated'],
  ]
  for (const [what, body, code] of refusals) {
    const res = await post(c.url, GET_STREAM_HEAD_PATH, body)
    t.not(res.status, 200, what)
    t.equal(errorOf(res).code, code, what)
    t.notMatch(res.body.toString('latin1'), /auditID/, `${what}: no event line in the answer`)
  }
  // A trusted key learns nothing of a stream that does not exist beyond "no head" (it could create it).
  const fresh = await post(c.url, GET_STREAM_HEAD_PATH, headRequest('node-c', nodeA))
  t.equal(decodeGetStreamHeadResponse(fresh.body), undefined)
})

// Key binding and rotation hold the same on both stores.
for (const kind of STORE_KINDS) {
  t.test(`${kind} store: one node's key cannot continue another node's stream; the real agent goes on`, async (t) => {
    const c = await collector(t, { kind })
    const b = new Chain('node-b', nodeB)
    await push(c.url, b.grow(2))
    // Node A forges batch 3 of node B's stream, linked correctly to B's head.
    const bytes = encodeBatch(batchOf('node-b', 3, batchDigest(b.sealed[1]!.batch), linesToRecords(['{"forged":true}'])))
    const sealed = { batch: bytes, signature: signSeal(batchDigest(bytes), nodeA.privateKey), keyId: nodeA.keyId, algorithm: SEAL_ALGORITHM }
    const res = await push(c.url, [sealed])
    t.equal(res.status, 403)
    t.equal(errorOf(res).code, 'permission_denied')
    t.match(errorOf(res).message, /belongs to key/)
    t.equal((await c.store.head('node-b'))!.sequence, 2, 'nothing stored')
    const next = await push(c.url, b.grow(1))
    t.equal(next.status, 200, 'node B continues its own stream')
    t.equal(decodePushBatchResponse(next.body).acknowledgedSequence, 3)
    t.ok((await verifyStore(c.dir, trustOf(nodeA, nodeB))).ok)
  })

  t.test(`${kind} store: a key rotation is explicit: the stream's key endorses the new one, and verify follows it`, async (t) => {
    const c = await collector(t, { kind })
    const chain = new Chain('node-a', nodeA)
    await push(c.url, chain.grow(2))
    const newKey = nodeB
    /** Batch `sequence` linked to the stream's head, sealed by `key`, without going through the chain. */
    const linked = (sequence: number, key: TestKey) => seal(batchOf('node-a', sequence, batchDigest(chain.sealed.at(-1)!.batch), linesToRecords(['{}'])), key)
    const unendorsed = await push(c.url, [linked(3, newKey)])
    t.equal(errorOf(unendorsed).code, 'permission_denied', 'a new key without an endorsement is refused')
    chain.key = newKey
    const endorsement = signRotation('node-a', newKey.keyId, 3, nodeA.privateKey)
    const rotated = await push(c.url, [chain.next(['{"after":"rotation"}'], { keyRotation: { previousKeyId: nodeA.keyId, endorsement } })])
    t.equal(rotated.status, 200, 'the endorsed rotation is stored')
    t.equal((await c.store.head('node-a'))!.keyId, newKey.keyId)
    const old = await push(c.url, [linked(4, nodeA)])
    t.equal(errorOf(old).code, 'permission_denied', 'the old key no longer writes the stream')
    t.equal((await push(c.url, [chain.next(['{}'])])).status, 200, 'the new key does')
    const verified = await verifyStore(c.dir, trustOf(nodeA, nodeB))
    t.ok(verified.ok, 'verify accepts the endorsed rotation')
    t.equal(verified.streams[0]!.headSequence, 4)
  })

  t.test(`${kind} store: one key holds a bounded number of streams`, async (t) => {
    const c = await collector(t, { kind, limits: { maxStreamsPerKey: 3 } })
    for (let i = 0; i < 3; i++) t.equal((await push(c.url, new Chain(`node-${i}`, nodeA).grow(1))).status, 200)
    const over = await push(c.url, new Chain('node-3', nodeA).grow(1))
    t.equal(errorOf(over).code, 'resource_exhausted')
    t.match(errorOf(over).message, /its own key/)
    t.equal((await push(c.url, new Chain('node-3', nodeB).grow(1))).status, 200, 'another key is not affected')
  })
}

t.test('replaying a stream\'s stored batches costs it no rate: the real agent is not starved', async (t) => {
  const c = await collector(t, { limits: { streamRequestsPerSecond: 1, streamBurst: 2 } })
  const chain = new Chain('node-a', nodeA)
  await push(c.url, chain.grow(1))
  for (let i = 0; i < 50; i++) t.equal((await push(c.url, [chain.sealed[0]!])).status, 200, 'a replay is acknowledged again')
  const real = await push(c.url, chain.grow(1))
  t.equal(real.status, 200, 'the agent\'s next batch is not rate-limited by the replays')
})

t.test('version 1 seals and paths are refused with what to do', async (t) => {
  const c = await collector(t)
  const bytes = encodeBatch(batchOf('node-a', 1, new Uint8Array(0), linesToRecords(['{}'])))
  const v1 = await push(c.url, [{ batch: bytes, signature: signBytes(bytes, nodeA.privateKey), keyId: nodeA.keyId, algorithm: 'ed25519' }])
  t.equal(errorOf(v1).code, 'invalid_argument')
  t.match(errorOf(v1).message, /version 1 seal.*upgrade the agent/)
  const path = await post(c.url, '/auditrail.v1.CollectorService/PushBatch', encodePushBatchRequest([]))
  t.equal(path.status, 404)
  t.match(errorOf(path).message, /version 1.*upgrade the agent/)
})

t.test('with client certificates, a certificate writes and reads only the stream it names', async (t) => {
  const dir = t.testdir()
  const ca = makeCa(dir, 'ca')
  const server = makeLeaf(dir, 'server', ca, 'serverAuth')
  const certA = makeLeaf(dir, 'client-a', ca, 'clientAuth', 'node-a')
  const c = await collector(t, { tls: { cert: server.cert, key: server.key, ca: ca.cert, requireClientCert: true } })
  const call = async (path: string, body: Uint8Array) => {
    const req = request(new URL(path, c.url), { method: 'POST', ca: ca.cert, cert: certA.cert, key: certA.key, headers: { 'content-type': 'application/proto' } })
    req.end(body)
    const [res] = await once(req, 'response') as [IncomingMessage]
    const chunks: Buffer[] = []
    for await (const chunk of res) chunks.push(chunk as Buffer)
    return { status: res.statusCode ?? 0, body: Buffer.concat(chunks) }
  }
  t.equal((await call(PUSH_BATCH_PATH, encodePushBatchRequest(new Chain('node-a', nodeA).grow(1)))).status, 200, 'its own stream')
  const other = await call(PUSH_BATCH_PATH, encodePushBatchRequest(new Chain('node-b', nodeB).grow(1)))
  t.equal(errorOf(other).code, 'permission_denied', 'another node\'s stream, even with that node\'s key')
  t.match(errorOf(other).message, /not named by the client certificate/)
  const head = await call(GET_STREAM_HEAD_PATH, headRequest('node-b', nodeB))
  t.equal(errorOf(head).code, 'permission_denied')
})
