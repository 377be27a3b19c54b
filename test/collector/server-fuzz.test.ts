// Fuzzing the collector's Connect handler over real HTTP on 127.0.0.1: arbitrary
// and mutated bodies, hostile headers (content-type, gzip that is not gzip,
// connect-protocol-version), and batches that are mutated and then signed with
// a trusted key (so that they pass the seal and reach decoding, limits and the
// chain). Every answer must be a well-formed Connect success or error (never
// internal), the collector keeps accepting a valid push, logs no unexpected
// failure, and the store still verifies. Seeded (FUZZ_SEED); longer with
// FUZZ_SECONDS or `npm run fuzz -- --target server`.
import { Writable } from 'node:stream'
import { gzipSync, zstdCompressSync } from 'node:zlib'
import fc from 'fast-check'
import { pino } from 'pino'
import t from 'tap'
import { startCollector } from '../../collector/server.ts'
import { verifyStore } from '../../collector/verify.ts'
import { CONNECT_CODES, isConnectCode, PROTO_CONTENT_TYPE } from '../../proto/connect.ts'
import {
  batchDigest,
  decodeGetStreamHeadResponse,
  decodePushBatchResponse,
  encodeBatch,
  encodePushBatchRequest,
  GET_STREAM_HEAD_PATH,
  PUSH_BATCH_PATH,
  SEVERITIES,
  type Batch,
  type SealedBatch,
  type WireRecord,
} from '../../proto/wire.ts'
import { SEAL_ALGORITHM, signSeal } from '../../proto/signed-messages.ts'
import { executionsLine, fuzzParameters, fuzzSettings, Surprises } from '../../scripts/fuzz.ts'
import { batchOf, eventLine, headRequest, post, seal, testKey, trustOf, type RawResponse } from './fixtures.ts'

const key = testKey()
const stranger = testKey()
const surprises = new Surprises()
const unexpectedLogs: string[] = []

const dir = t.testdir()
const logSink = new Writable({
  write(chunk: Buffer, _e, cb) {
    for (const line of chunk.toString().split('\n')) {
      if (!line) continue
      const entry = JSON.parse(line) as { level: number; msg: string }
      if (entry.level >= 50) unexpectedLogs.push(line.slice(0, 500))
    }
    cb()
  },
})
const collector = await startCollector({
  listen: { host: '127.0.0.1', port: 0 },
  storeDir: dir,
  trustedKeys: trustOf(key),
  // The per-stream rate limit would answer resource_exhausted to most of a fuzz run; it has its own tests.
  limits: { streamRequestsPerSecond: 1e9, streamBurst: 1e9, maxBodyBytes: 1024 * 1024, maxDecompressedBytes: 4 * 1024 * 1024, maxRecordsPerBatch: 50, maxLineBytes: 4096 },
  logger: pino({ level: 'warn' }, logSink),
})
t.teardown(() => collector.close())
t.comment(`seed ${fuzzSettings().seed} (FUZZ_SEED to replay, FUZZ_SECONDS to run longer)`)

// --- a valid chain beside the fuzzing: it must keep working

// No fuzz input names this stream: only valid pushes go to it.
let validSequence = 0
let validPrev: Uint8Array = new Uint8Array(0)
async function pushValid(streamId = 'valid-stream'): Promise<RawResponse> {
  const records = [eventLine(validSequence + 1, 0)].map((l, i) => ({ offset: i, line: Buffer.from(l) }))
  const s = seal(batchOf(streamId, validSequence + 1, validPrev, records), key)
  const res = await post(collector.url, PUSH_BATCH_PATH, encodePushBatchRequest([s]))
  if (res.status === 200) {
    validSequence++
    validPrev = batchDigest(s.batch)
  }
  return res
}

// --- what every answer must look like

function checkAnswer(res: RawResponse, path: string, input: unknown): void {
  try {
    if (res.status === 200) {
      if (res.headers['content-type'] !== PROTO_CONTENT_TYPE) throw new Error(`200 with content-type ${res.headers['content-type']}`)
      if (path === PUSH_BATCH_PATH) decodePushBatchResponse(res.body)
      else decodeGetStreamHeadResponse(res.body)
      return
    }
    if (res.headers['content-type'] !== 'application/json') throw new Error(`error ${res.status} with content-type ${res.headers['content-type']}`)
    const error = JSON.parse(res.body.toString()) as { code?: unknown; message?: unknown }
    if (!isConnectCode(error.code) || typeof error.message !== 'string' || error.message.length === 0) throw new Error(`not a Connect error: ${res.body.toString().slice(0, 200)}`)
    if (error.code === 'internal' || error.code === 'unknown') throw new Error(`the handler failed: ${error.code}: ${error.message}`)
    const explicit = error.code === 'unimplemented' && [404, 405, 415].includes(res.status)
    if (!explicit && res.status !== CONNECT_CODES[error.code]) throw new Error(`status ${res.status} does not match code ${error.code}`)
  } catch (err) {
    surprises.record(err, input)
  }
}

async function send(path: string, body: Uint8Array, headers: Record<string, string>, input: unknown): Promise<RawResponse | undefined> {
  try {
    const res = await post(collector.url, path, body, headers)
    checkAnswer(res, path, input)
    return res
  } catch (err) {
    // A connection reset is an acceptable end only for a request over a limit; these are all small.
    surprises.record(err, input)
    return undefined
  }
}

// --- inputs

const bytes = (max: number) => fc.uint8Array({ maxLength: max })
type Mutation = [op: number, at: number, value: number]
const mutations = fc.array(fc.tuple(fc.nat(5), fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 6 })
function mutate(input: Uint8Array, ops: Mutation[]): Buffer {
  let b = Buffer.from(input)
  for (const [op, at, value] of ops) {
    const i = b.length === 0 ? 0 : at % b.length
    switch (op) {
      case 0: if (b.length > 0) b[i] = value; break
      case 1: b = Buffer.concat([b.subarray(0, i), Buffer.from([value]), b.subarray(i)]); break
      case 2: b = Buffer.concat([b.subarray(0, i), b.subarray(i + 1)]); break
      case 3: b = b.subarray(0, i); break
      case 4: b = Buffer.concat([b.subarray(0, i), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), b.subarray(i)]); break
      default: if (b.length > 0) b[i] = (b[i]! & 0xf8) | (value % 8)
    }
  }
  return b
}

const text = fc.string({ unit: 'binary', maxLength: 30 })
const streamIds = fc.oneof(fc.constantFrom('fuzz-a', 'fuzz-b', 'fuzz-c', '', '..', 'a/b', '__proto__', 'x'.repeat(300)), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,12}$/))
const hostileLine = fc.oneof(
  fc.constantFrom('{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"polluted":1}}}', '{"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"get","user":{"username":{"toString":1}}}', 'null', '[]', '9'.repeat(400), '{"a":1,"a":2}', '\u0000'),
  fc.json({ maxDepth: 4 }),
  text,
).map((s) => Buffer.from(s))
const record: fc.Arbitrary<WireRecord> = fc.tuple(
  fc.maxSafeNat(),
  fc.oneof(
    hostileLine.map((line) => ({ line })),
    fc.uint8Array({ maxLength: 64 }).map((line) => ({ line })),
    fc.record({ length: fc.maxSafeNat(), sha256: bytes(32), reason: text, storedAs: text }).map((quarantine) => ({ quarantine })),
    fc.record({ path: text, fromOffset: fc.maxSafeNat(), toOffset: fc.maxSafeNat(), reason: text }).map((gap) => ({ gap })),
  ),
  fc.option(text.filter((s) => s.length > 0), { nil: undefined }),
).map(([offset, kind, unparsedReason]) => ({ offset, ...kind, ...(unparsedReason ? { unparsedReason } : {}) }))
const findingsOf = (n: number) => fc.array(fc.record({
  recordIndex: fc.nat({ max: Math.max(0, n - 1) }),
  source: fc.constantFrom('rule' as const, 'detector' as const),
  id: text,
  severity: fc.constantFrom(...SEVERITIES),
  message: text,
  auditId: text,
  details: fc.dictionary(fc.oneof(text, fc.constantFrom('__proto__', 'constructor')), text, { maxKeys: 3 }),
}), { maxLength: n === 0 ? 0 : 3 })

/** Where each stream's head is, as the collector says: a signed batch can then link to it. */
async function headOf(streamId: string): Promise<{ sequence: number; digest: Uint8Array }> {
  const h = await collector.store.head(streamId)
  return h ? { sequence: h.sequence, digest: h.digest } : { sequence: 0, digest: new Uint8Array(0) }
}

function signed(batchBytes: Uint8Array): SealedBatch {
  return { batch: batchBytes, signature: signSeal(batchDigest(batchBytes), key.privateKey), keyId: key.keyId, algorithm: SEAL_ALGORITHM }
}

const headerSets = fc.record({
  'content-type': fc.constantFrom(PROTO_CONTENT_TYPE, 'application/proto; charset=utf-8', 'APPLICATION/PROTO', 'application/json', 'application/connect+proto', '', 'text/plain', '\t'),
  'content-encoding': fc.constantFrom(undefined, 'gzip', 'zstd', 'identity', 'br', ' GZIP ', 'gzip, gzip', ''),
  'connect-protocol-version': fc.constantFrom(undefined, '1', '2', 'x', ''),
}, { requiredKeys: ['content-type'] })

// --- the properties

const properties: Array<{ name: string; ciRuns: number; share: number; arb: fc.Arbitrary<unknown>; run: (v: never) => Promise<void> }> = [
  {
    name: 'server/arbitrary-requests',
    ciRuns: 3000,
    share: 0.35,
    arb: fc.record({
      path: fc.constantFrom(PUSH_BATCH_PATH, PUSH_BATCH_PATH, GET_STREAM_HEAD_PATH, '/auditrail.v1.CollectorService/Nope', '/'),
      headers: headerSets,
      body: fc.oneof(
        bytes(300),
        fc.tuple(streamIds, mutations).map(([s, ops]) => mutate(headRequest(s, key), ops)),
        mutations.map((ops) => mutate(encodePushBatchRequest([seal(batchOf('fuzz-a', 1, new Uint8Array(0), [{ offset: 0, line: Buffer.from('{}') }]), key)]), ops)),
      ),
      gzip: fc.constantFrom('as is', 'gzipped', 'gzip then mutated', 'gzip header then garbage', 'zstd', 'zstd then mutated'),
      ops: mutations,
    }),
    run: async (v: { path: string; headers: Record<string, string | undefined>; body: Uint8Array; gzip: string; ops: Mutation[] }) => {
      let body: Uint8Array = v.body
      if (v.gzip === 'gzipped') body = gzipSync(body)
      if (v.gzip === 'gzip then mutated') body = mutate(gzipSync(body), v.ops)
      if (v.gzip === 'zstd') body = zstdCompressSync(body)
      if (v.gzip === 'zstd then mutated') body = mutate(zstdCompressSync(body), v.ops)
      if (v.gzip === 'gzip header then garbage') body = Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0xff]), body])
      const headers = Object.fromEntries(Object.entries(v.headers).filter(([, x]) => x !== undefined)) as Record<string, string>
      await send(v.path, body, headers, { ...v, body })
    },
  },
  {
    name: 'server/signed-mutated-batches',
    ciRuns: 2000,
    share: 0.35,
    arb: fc.record({ streamId: fc.constantFrom('fuzz-a', 'fuzz-b'), ops: mutations, link: fc.boolean(), twice: fc.boolean(), stranger: fc.boolean() }),
    run: async (v: { streamId: string; ops: Mutation[]; link: boolean; twice: boolean; stranger: boolean }) => {
      const head = await headOf(v.streamId)
      const records = [eventLine(head.sequence + 1, 0), eventLine(head.sequence + 1, 1)].map((l, i) => ({ offset: i * 200, line: Buffer.from(l) }))
      const valid = encodeBatch(batchOf(v.streamId, head.sequence + 1, head.digest, records))
      const bytes = mutate(valid, v.ops)
      const sealed = v.stranger ? { ...signed(bytes), keyId: stranger.keyId, signature: signSeal(batchDigest(bytes), stranger.privateKey) } : signed(bytes)
      const batches = v.twice ? [sealed, sealed] : [sealed]
      await send(PUSH_BATCH_PATH, encodePushBatchRequest(batches), {}, { ...v, batch: bytes })
    },
  },
  {
    name: 'server/signed-hostile-batches',
    ciRuns: 1200,
    share: 0.2,
    arb: fc.record({
      streamId: streamIds,
      records: fc.array(record, { maxLength: 6 }),
      findingSeed: fc.nat(),
      node: text,
      createdUnixMs: fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
      sequenceShift: fc.constantFrom(0, 0, 0, 1, -1, 2 ** 40),
      gzip: fc.boolean(),
    }).chain((v) => findingsOf(v.records.length).map((findings) => ({ ...v, findings }))),
    run: async (v: { streamId: string; records: WireRecord[]; findings: Batch['findings']; node: string; createdUnixMs: number; sequenceShift: number; gzip: boolean }) => {
      const head = await headOf(v.streamId)
      const sequence = Math.max(1, head.sequence + 1 + v.sequenceShift)
      const prev = sequence === 1 ? new Uint8Array(0) : sequence === head.sequence + 1 ? head.digest : Buffer.alloc(32, 9)
      const b = batchOf(v.streamId, sequence, prev, v.records, { findings: v.findings, node: v.node, createdUnixMs: v.createdUnixMs })
      const body = encodePushBatchRequest([signed(encodeBatch(b))])
      await send(PUSH_BATCH_PATH, v.gzip ? gzipSync(body) : body, v.gzip ? { 'content-encoding': 'gzip' } : {}, b)
    },
  },
]

for (const p of properties) {
  t.test(p.name, async (t) => {
    let executions = 0
    const started = performance.now()
    await fc.assert(
      fc.asyncProperty(p.arb, async (v) => {
        executions++
        await p.run(v as never)
      }),
      fuzzParameters(p.ciRuns, 9 * p.share, p.share),
    )
    t.comment(executionsLine(p.name, executions, performance.now() - started))
    const res = await pushValid()
    t.equal(res.status, 200, 'a valid push is still accepted afterwards')
    t.same(decodePushBatchResponse(res.body), { streamId: 'valid-stream', acknowledgedSequence: validSequence })
  })
}

t.test('hostile bodies: a gzip bomb, a body over the limit, a truncated gzip', async (t) => {
  const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024))
  const cases: Array<[string, Uint8Array, Record<string, string>, string]> = [
    ['gzip bomb (64 MiB of zeros)', bomb, { 'content-encoding': 'gzip' }, 'resource_exhausted'],
    ['2 MiB body', Buffer.alloc(2 * 1024 * 1024, 1), {}, 'resource_exhausted'],
    ['truncated gzip', gzipSync(Buffer.alloc(1000, 7)).subarray(0, 20), { 'content-encoding': 'gzip' }, 'invalid_argument'],
  ]
  for (const [name, body, headers, code] of cases) {
    const res = await post(collector.url, PUSH_BATCH_PATH, body, headers).catch((err: Error) => ({ status: 0, headers: {}, body: Buffer.from(err.message) }))
    t.equal(res.status !== 0 ? (JSON.parse(res.body.toString()) as { code: string }).code : 'reset', code, name)
  }
  t.equal((await pushValid()).status, 200, 'a valid push is still accepted afterwards')
})

t.test('no surprises, no unexpected failure logged, and the store verifies', async (t) => {
  const found = surprises.entries()
  for (const s of found) t.fail(`${s.kind} (${s.count}×)\ninput: ${s.input}\n${s.stack}`)
  t.equal(found.length, 0, 'every answer is a well-formed Connect success or error')
  t.same(unexpectedLogs, [], 'nothing logged at error level')
  const stats = collector.stats()
  t.notOk(stats.rejected.internal, 'no internal errors')
  t.comment(`accepted ${stats.acceptedBatches} batches (${validSequence} on the valid stream), rejected ${JSON.stringify(stats.rejected)}`)
  await collector.indexer?.idle()
  const result = await verifyStore(dir, trustOf(key))
  t.ok(result.ok, `verifyStore: ${result.problem ? JSON.stringify(result.problem) : 'ok'}`)
  t.ok(result.streams.some((s) => s.stream === 'valid-stream' && s.headSequence === validSequence), 'the valid stream is whole')
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution')
})
