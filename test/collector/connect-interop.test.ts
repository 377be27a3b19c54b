// The collector as people outside this repository call it: JSON bodies sent as
// curl would (raw HTTP, hand-written proto3 JSON), and the official Connect
// client (@connectrpc/connect-node) in its binary and JSON modes.
import { Code, ConnectError } from '@connectrpc/connect'
import { createConnectTransport } from '@connectrpc/connect-node'
import t from 'tap'
import { signStreamHeadRequest } from '../../proto/signed-messages.ts'
import { GET_STREAM_HEAD_PATH, PUSH_BATCH_PATH, type SealedBatch } from '../../proto/wire.ts'
import { collectorClient } from './connect-client.ts'
import { Chain, gzip, loopbackCollector, post, testKey, trustOf } from './fixtures.ts'

const key = testKey()

/** A SealedBatch as proto3 JSON, written out by hand as a person with curl would. */
function sealedJson(s: SealedBatch): Record<string, string> {
  return { batch: Buffer.from(s.batch).toString('base64'), signature: Buffer.from(s.signature).toString('base64'), keyId: s.keyId, algorithm: s.algorithm }
}

function postJson(url: string, path: string, body: unknown, headers: Record<string, string> = {}) {
  return post(url, path, Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)), { 'content-type': 'application/json', ...headers })
}

function json(res: { body: Buffer }): Record<string, unknown> {
  return JSON.parse(res.body.toString()) as Record<string, unknown>
}

t.test('JSON over raw HTTP: push, re-send, read the head back; 64-bit integers as strings, bytes as base64', async (t) => {
  const c = await loopbackCollector(t, key)
  const chain = new Chain('node-a', key)
  const pushed = await postJson(c.url, PUSH_BATCH_PATH, { batches: chain.grow(3).map(sealedJson) })
  t.equal(pushed.status, 200, pushed.body.toString())
  t.equal(pushed.headers['content-type'], 'application/json')
  t.same(json(pushed), { streamId: 'node-a', acknowledgedSequence: '3' })
  t.same(json(await postJson(c.url, PUSH_BATCH_PATH, { batches: chain.sealed.slice(1).map(sealedJson) })), { streamId: 'node-a', acknowledgedSequence: '3' }, 'a re-send is acknowledged again')
  const zipped = await post(c.url, PUSH_BATCH_PATH, gzip(Buffer.from(JSON.stringify({ batches: chain.grow(1).map(sealedJson) }))), { 'content-type': 'application/json; charset=utf-8', 'content-encoding': 'gzip' })
  t.same(json(zipped), { streamId: 'node-a', acknowledgedSequence: '4' }, 'gzip and a charset parameter')

  const issued = Date.now()
  const signature = signStreamHeadRequest('node-a', issued, key.privateKey)
  // The .proto's own field names, a number for the int64 and URL-safe base64 without padding: all accepted.
  const head = await postJson(c.url, GET_STREAM_HEAD_PATH, { stream_id: 'node-a', key_id: key.keyId, issued_unix_ms: issued, signature: signature.toString('base64url') })
  t.equal(head.status, 200, head.body.toString())
  t.same(json(head), { head: sealedJson(chain.sealed[3]!) })
  const headOfNone = await postJson(c.url, GET_STREAM_HEAD_PATH, { streamId: 'node-b', keyId: key.keyId, issuedUnixMs: String(issued), signature: signStreamHeadRequest('node-b', issued, key.privateKey).toString('base64') })
  t.same(json(headOfNone), {}, 'no head: an empty object')
})

t.test('JSON refusals name the field and keep the Connect codes', async (t) => {
  const c = await loopbackCollector(t, key)
  const chain = new Chain('node-a', key)
  const first = chain.grow(1)
  await postJson(c.url, PUSH_BATCH_PATH, { batches: first.map(sealedJson) })
  const cases: Array<[string, unknown, number, string, RegExp]> = [
    ['not JSON', '{"batches": [', 400, 'invalid_argument', /request: not valid JSON/],
    ['not an object', '[]', 400, 'invalid_argument', /request: must be a JSON object/],
    ['unknown field', { batches: [], token: 'x' }, 400, 'invalid_argument', /request\.token: unknown field; request has batches/],
    ['bytes not base64', { batches: [{ ...sealedJson(first[0]!), signature: 'not base64!' }] }, 400, 'invalid_argument', /request\.batches\[0\]\.signature: must be a base64 string/],
    ['batches not a list', { batches: {} }, 400, 'invalid_argument', /request\.batches: must be a JSON array/],
    ['too many batches', { batches: Array.from({ length: 65 }, () => sealedJson(first[0]!)) }, 429, 'resource_exhausted', /more than 64 batches per request/],
    ['a fork', { batches: [sealedJson(new Chain('node-a', key).next(['another line']))] }, 409, 'already_exists', /fork: sequence 1/],
    ['a gap', { batches: [sealedJson(chain.grow(2)[1]!)] }, 400, 'out_of_range', /gap: stream node-a expects sequence 2, got 3/],
  ]
  for (const [what, body, status, code, message] of cases) {
    const res = await postJson(c.url, PUSH_BATCH_PATH, body)
    t.equal(res.status, status, what)
    t.equal(json(res).code, code, what)
    t.match(json(res).message, message, what)
  }
  const badInteger = await postJson(c.url, GET_STREAM_HEAD_PATH, { streamId: 'node-a', keyId: key.keyId, issuedUnixMs: '12.5' })
  t.match(json(badInteger), { code: 'invalid_argument', message: /request\.issued_unix_ms: must be an integer/ })
})

for (const useBinaryFormat of [true, false]) {
  t.test(`the official Connect client over HTTP/1.1, ${useBinaryFormat ? 'binary' : 'JSON'}: push, head, and the documented error`, async (t) => {
    const c = await loopbackCollector(t, key)
    const client = collectorClient(createConnectTransport({ baseUrl: c.url, httpVersion: '1.1', useBinaryFormat }))
    const chain = new Chain('node-a', key)
    const ack = await client.pushBatch({ batches: chain.grow(3) })
    t.equal(ack.streamId, 'node-a')
    t.equal(ack.acknowledgedSequence, 3n)
    const issued = Date.now()
    const head = await client.getStreamHead({ streamId: 'node-a', keyId: key.keyId, issuedUnixMs: BigInt(issued), signature: signStreamHeadRequest('node-a', issued, key.privateKey) })
    t.same(Buffer.from(head.head!.batch), Buffer.from(chain.sealed[2]!.batch))
    const fork = await client.pushBatch({ batches: [new Chain('node-a', key).next(['another line'])] }).then(() => undefined, (err: unknown) => err)
    t.ok(fork instanceof ConnectError)
    t.equal((fork as ConnectError).code, Code.AlreadyExists)
    t.match((fork as ConnectError).rawMessage, /fork: sequence 1 of stream node-a already holds a different batch/)
    const stranger = testKey()
    const denied = await client.getStreamHead({ streamId: 'node-a', keyId: stranger.keyId, issuedUnixMs: BigInt(issued), signature: signStreamHeadRequest('node-a', issued, stranger.privateKey) }).then(() => undefined, (err: unknown) => err)
    t.equal((denied as ConnectError).code, Code.Unauthenticated, 'a key the collector does not trust learns nothing')
  })
}
