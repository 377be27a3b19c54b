// Fuzzing the wire contract (proto/wire.ts): every decoder on arbitrary bytes
// and on mutations of valid encodings either returns a typed value or throws
// WireError (which the collector answers as invalid_argument), never anything
// else and never slowly; valid encodings round-trip. Seeded (FUZZ_SEED), and
// longer with FUZZ_SECONDS or `npm run fuzz -- --target wire`.
import { deepStrictEqual } from 'node:assert'
import fc from 'fast-check'
import t from 'tap'
import {
  decodeBatch,
  decodeGetStreamHeadRequest,
  decodeGetStreamHeadResponse,
  decodePushBatchRequest,
  decodePushBatchResponse,
  decodeSealedBatch,
  encodeBatch,
  encodeGetStreamHeadRequest,
  encodeGetStreamHeadResponse,
  encodePushBatchRequest,
  encodePushBatchResponse,
  encodeSealedBatch,
  SEVERITIES,
  WireError,
  type Batch,
  type SealedBatch,
  type WireRecord,
} from '../../proto/wire.ts'
import { executionsLine, fuzzParameters, fuzzSettings, Surprises } from '../../scripts/fuzz.ts'

// Far above what any input takes on a quiet machine (milliseconds): flags work that grows out of bounds, not a busy machine.
const SLOW_MS = 5000
const DECODERS: Record<string, (b: Uint8Array) => unknown> = {
  decodeBatch,
  decodeSealedBatch,
  decodePushBatchRequest,
  decodePushBatchResponse,
  decodeGetStreamHeadRequest,
  decodeGetStreamHeadResponse,
}

// --- valid messages

const text = fc.string({ unit: 'grapheme', maxLength: 40 })
const bytes = (max: number) => fc.uint8Array({ maxLength: max })
const u64 = fc.maxSafeNat()
const record: fc.Arbitrary<WireRecord> = fc.tuple(
  u64,
  fc.oneof(
    bytes(200).map((line) => ({ line })),
    fc.record({ length: u64, sha256: bytes(32), reason: text, storedAs: text }).map((quarantine) => ({ quarantine })),
    fc.record({ path: text, fromOffset: u64, toOffset: u64, reason: text }).map((gap) => ({ gap })),
  ),
  fc.option(text.filter((s) => s.length > 0), { nil: undefined }),
  fc.option(fc.array(text, { minLength: 1, maxLength: 3 }), { nil: undefined }),
).map(([offset, kind, unparsedReason, redactedPaths]) => ({
  offset,
  ...kind,
  ...(unparsedReason !== undefined ? { unparsedReason } : {}),
  ...(redactedPaths !== undefined ? { redactedPaths } : {}),
}))

const detailKey = fc.oneof(text, fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty'))

const batch: fc.Arbitrary<Batch> = fc
  .record({
    streamId: text,
    sequence: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    digest: fc.uint8Array({ minLength: 32, maxLength: 32 }),
    createdUnixMs: fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
    node: text,
    source: fc.record({
      path: text,
      device: u64,
      inode: u64,
      fingerprint: bytes(32),
      fingerprintLength: fc.nat({ max: 2 ** 32 - 1 }),
      startOffset: u64,
      endOffset: u64,
      endOfFile: fc.boolean(),
      rotatedUnixMs: u64,
      liveAfterUnixMs: u64,
    }),
    records: fc.array(record, { maxLength: 6 }),
    findings: fc.array(
      fc.record({
        recordIndex: fc.nat(),
        source: fc.constantFrom('rule' as const, 'detector' as const),
        id: text,
        severity: fc.constantFrom(...SEVERITIES),
        message: text,
        auditId: text,
        details: fc.dictionary(detailKey, text, { maxKeys: 4 }),
      }),
      { maxLength: 4 },
    ),
  })
  .map(({ digest, findings, records, ...b }) => ({
    ...b,
    prevDigest: b.sequence === 1 ? new Uint8Array(0) : digest,
    records,
    findings: records.length === 0 ? [] : findings.map((f) => ({ ...f, recordIndex: f.recordIndex % records.length })),
  }))

const sealed: fc.Arbitrary<SealedBatch> = fc.record({
  batch: batch.map(encodeBatch),
  signature: bytes(64),
  keyId: text,
  algorithm: fc.constantFrom('ed25519', '', 'rsa'),
})

// --- mutations of bytes: flips, inserts, deletes, truncation, hostile varints

type Mutation = [op: number, at: number, value: number]
const mutations = fc.array(fc.tuple(fc.nat(6), fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 8 })

function mutate(input: Uint8Array, ops: Mutation[]): Uint8Array {
  let b = Buffer.from(input)
  for (const [op, at, value] of ops) {
    const i = b.length === 0 ? 0 : at % b.length
    switch (op) {
      case 0: if (b.length > 0) b[i] = value; break
      case 1: b = Buffer.concat([b.subarray(0, i), Buffer.from([value]), b.subarray(i)]); break
      case 2: b = Buffer.concat([b.subarray(0, i), b.subarray(i + 1)]); break
      case 3: b = b.subarray(0, i); break
      case 4: b = Buffer.concat([b.subarray(0, i), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), b.subarray(i)]); break // the largest varint
      case 5: if (b.length > 0) b[i] = (b[i]! & 0xf8) | (value % 8); break // another wire type
      default: b = Buffer.concat([b.subarray(0, i), b.subarray(i, i + 1 + (value % 16)), b.subarray(i)]) // duplicate a run
    }
  }
  return b
}

// --- checks

const surprises = new Surprises()

/** Decoding may return or throw WireError; anything else, or a slow answer, is a surprise. */
function decodeAll(input: Uint8Array, decoders: string[] = Object.keys(DECODERS)): void {
  for (const name of decoders) {
    const started = performance.now()
    try {
      const value = DECODERS[name]!(input)
      // What a decoded SealedBatch carries is decoded next, as the collector does.
      if (name === 'decodeSealedBatch') decodeBatch((value as SealedBatch).batch)
      if (name === 'decodePushBatchRequest') for (const s of value as SealedBatch[]) decodeBatch(s.batch)
    } catch (err) {
      if (!(err instanceof WireError)) surprises.record(err, { decoder: name, input })
      else if (typeof err.field !== 'string' || !err.message.startsWith(err.field)) surprises.record(new Error(`WireError without its field: ${err.message}`), { decoder: name, input })
    }
    const ms = performance.now() - started
    if (ms > SLOW_MS) surprises.record(new Error(`${name} took ${Math.round(ms)} ms`), input)
  }
}

/** Buffers and Uint8Arrays as hex, so that round-trips compare by content. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return `hex:${Buffer.from(v).toString('hex')}`
  if (Array.isArray(v)) return v.map(plain)
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]))
  return v
}

t.comment(`seed ${fuzzSettings().seed} (FUZZ_SEED to replay, FUZZ_SECONDS to run longer)`)

const properties: Array<{ name: string; ciRuns: number; share: number; arb: fc.Arbitrary<unknown>; check: (v: never) => void }> = [
  {
    name: 'wire/arbitrary-bytes',
    ciRuns: 8000,
    share: 0.2,
    arb: fc.oneof(bytes(64), bytes(2000), fc.array(fc.constantFrom(0x0a, 0x12, 0x1a, 0x0b, 0x08, 0xff, 0x80, 0x00, 0x01, 0x7f), { maxLength: 500 }).map((a) => Uint8Array.from(a))),
    check: (input: Uint8Array) => decodeAll(input),
  },
  {
    name: 'wire/batch-round-trip-and-mutations',
    ciRuns: 6000,
    share: 0.35,
    arb: fc.tuple(batch, mutations),
    check: ([b, ops]: [Batch, Mutation[]]) => {
      const encoded = encodeBatch(b)
      try {
        deepStrictEqual(plain(decodeBatch(encoded)), plain(b))
      } catch (err) {
        surprises.record(new Error(`Batch does not round-trip: ${(err as Error).message.split('\n')[0]}`), b)
      }
      decodeAll(mutate(encoded, ops), ['decodeBatch'])
    },
  },
  {
    name: 'wire/sealed-and-request-mutations',
    ciRuns: 4000,
    share: 0.35,
    arb: fc.tuple(fc.array(sealed, { minLength: 1, maxLength: 3 }), mutations),
    check: ([batches, ops]: [SealedBatch[], Mutation[]]) => {
      const request = encodePushBatchRequest(batches)
      try {
        deepStrictEqual(plain(decodePushBatchRequest(request)), plain(batches))
        deepStrictEqual(plain(decodeSealedBatch(encodeSealedBatch(batches[0]!))), plain(batches[0]))
        deepStrictEqual(plain(decodeGetStreamHeadResponse(encodeGetStreamHeadResponse(batches[0]!))), plain(batches[0]))
      } catch (err) {
        surprises.record(new Error(`SealedBatch does not round-trip: ${(err as Error).message.split('\n')[0]}`), batches)
      }
      decodeAll(mutate(request, ops), ['decodePushBatchRequest'])
      decodeAll(mutate(encodeSealedBatch(batches[0]!), ops), ['decodeSealedBatch', 'decodeGetStreamHeadResponse'])
    },
  },
  {
    name: 'wire/small-messages',
    ciRuns: 3000,
    share: 0.1,
    arb: fc.tuple(text, u64, mutations),
    check: ([streamId, sequence, ops]: [string, number, Mutation[]]) => {
      try {
        const request = { streamId, keyId: streamId.slice(0, 32), issuedUnixMs: sequence, signature: Buffer.from(streamId) }
        deepStrictEqual(decodeGetStreamHeadRequest(encodeGetStreamHeadRequest(request)), request)
        deepStrictEqual(decodePushBatchResponse(encodePushBatchResponse({ streamId, acknowledgedSequence: sequence })), { streamId, acknowledgedSequence: sequence })
      } catch (err) {
        surprises.record(new Error(`small message does not round-trip: ${(err as Error).message.split('\n')[0]}`), { streamId, sequence })
      }
      decodeAll(mutate(encodeGetStreamHeadRequest({ streamId, keyId: 'k', issuedUnixMs: sequence, signature: Buffer.alloc(64) }), ops), ['decodeGetStreamHeadRequest'])
      decodeAll(mutate(encodePushBatchResponse({ streamId, acknowledgedSequence: sequence }), ops), ['decodePushBatchResponse'])
    },
  },
]

for (const p of properties) {
  t.test(p.name, async (t) => {
    let executions = 0
    const started = performance.now()
    await fc.assert(
      fc.property(p.arb, (v) => {
        executions++
        p.check(v as never)
      }),
      fuzzParameters(p.ciRuns, 9 * p.share, p.share),
    )
    t.comment(executionsLine(p.name, executions, performance.now() - started))
    t.ok(executions > 0)
  })
}

t.test('hostile shapes: deep groups, huge lengths, a 1 MiB run of one tag', async (t) => {
  const cases: Record<string, Uint8Array> = {
    'start-group nested 100,000 deep': Buffer.alloc(100_000, 0x0b),
    'a length of 2^32 for bytes': Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
    'a varint that never ends': Buffer.alloc(1000, 0x80),
    'one tag 1 MiB times (empty batch fields)': Buffer.concat([Buffer.alloc(1024 * 1024).fill(Buffer.from([0x0a, 0x00]))]),
    'records nested inside records': Buffer.concat(Array.from({ length: 5000 }, () => Buffer.from([0x3a, 0x00]))),
  }
  for (const [name, input] of Object.entries(cases)) {
    const before = surprises.size
    decodeAll(input)
    t.equal(surprises.size, before, `${name}: only WireError, in time`)
  }
})

t.test('a finding detail keyed "__proto__" round-trips', async (t) => {
  const b: Batch = {
    streamId: 's', sequence: 1, prevDigest: new Uint8Array(0), createdUnixMs: 0, node: 'n',
    source: { path: '', device: 0, inode: 0, fingerprint: new Uint8Array(0), fingerprintLength: 0, startOffset: 0, endOffset: 0, endOfFile: false, rotatedUnixMs: 0, liveAfterUnixMs: 0 },
    records: [{ offset: 0, line: Buffer.from('{}') }],
    findings: [{ recordIndex: 0, source: 'rule', id: 'x', severity: 'high', message: '', auditId: '', details: JSON.parse('{"__proto__":"v","ok":"1"}') as Record<string, string> }],
  }
  const decoded = decodeBatch(encodeBatch(b))
  t.equal(Object.getPrototypeOf(decoded.findings[0]!.details), Object.prototype, 'the details object keeps its prototype')
  t.equal(decoded.findings[0]!.details.ok, '1')
  t.equal(Object.getOwnPropertyDescriptor(decoded.findings[0]!.details, '__proto__')?.value, 'v', 'the "__proto__" detail survives decoding as an own key')
  t.equal(({} as Record<string, unknown>).v, undefined, 'no prototype pollution')
})

t.test('no surprises: only WireError, never slow, every valid message round-trips', async (t) => {
  const found = surprises.entries()
  for (const s of found) t.fail(`${s.kind} (${s.count}×)\ninput: ${s.input}\n${s.stack}`)
  t.equal(found.length, 0, 'no exception other than WireError')
})
