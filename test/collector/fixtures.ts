// Builds signed batch chains the way the agent's sealer does (same proto/ codecs),
// for collector, verifier and end-to-end tests.
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import { request } from 'node:http'
import type { Test } from 'tap'
import { gzipSync } from 'node:zlib'
import { keyIdOf } from '../../proto/keys.ts'
import { SEAL_ALGORITHM, signSeal, signStreamHeadRequest } from '../../proto/signed-messages.ts'
import { startCollector, type Collector, type CollectorOptions } from '../../collector/server.ts'
import type { BatchStore } from '../../collector/store/store.ts'
import { batchDigest, decodeBatch, encodeBatch, encodeGetStreamHeadRequest, type Batch, type Finding, type SealedBatch, type WireRecord } from '../../proto/wire.ts'
import { createAuditEventGenerator } from '../../scripts/audit-events.ts'

export interface TestKey {
  privateKey: KeyObject
  publicKey: KeyObject
  keyId: string
}

export function testKey(): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return { privateKey, publicKey, keyId: keyIdOf(publicKey) }
}

export function trustOf(...keys: TestKey[]): Map<string, KeyObject> {
  return new Map(keys.map((k) => [k.keyId, k.publicKey]))
}

/** A collector on 127.0.0.1 trusting `key`, on the test's directory without the query index; closed when the test ends. */
export async function loopbackCollector(t: Test, key: TestKey, options: Partial<CollectorOptions> = {}): Promise<Collector> {
  const c = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: t.testdir(), trustedKeys: trustOf(key), index: false, ...options })
  t.teardown(() => c.close())
  return c
}

export function batchOf(streamId: string, sequence: number, prevDigest: Uint8Array, records: WireRecord[], overrides: Partial<Batch> = {}): Batch {
  return {
    streamId,
    sequence,
    prevDigest,
    createdUnixMs: 1_764_064_800_000 + sequence,
    node: streamId,
    source: {
      path: '/var/log/kubernetes/audit/audit.log',
      device: 2049,
      inode: 1234,
      fingerprint: Buffer.alloc(32, 7),
      fingerprintLength: 256,
      startOffset: 0,
      endOffset: 0,
      endOfFile: false,
      rotatedUnixMs: 0,
      liveAfterUnixMs: 0,
    },
    records,
    findings: [],
    ...overrides,
  }
}

export function seal(batch: Batch, key: TestKey): SealedBatch {
  const bytes = encodeBatch(batch)
  return { batch: bytes, signature: signSeal(batchDigest(bytes), key.privateKey), keyId: key.keyId, algorithm: SEAL_ALGORITHM }
}

/** A GetStreamHead request signed as the agent signs it. */
export function headRequest(streamId: string, key: TestKey, issuedUnixMs = Date.now()): Uint8Array {
  return encodeGetStreamHeadRequest({ streamId, keyId: key.keyId, issuedUnixMs, signature: signStreamHeadRequest(streamId, issuedUnixMs, key.privateKey) })
}

export function linesToRecords(lines: string[], startOffset = 0): WireRecord[] {
  let offset = startOffset
  return lines.map((l) => {
    const record = { offset, line: Buffer.from(l) }
    offset += Buffer.byteLength(l) + 1
    return record
  })
}

/** A stream's chain, sealed batch after batch; `next` continues from the last one. */
export class Chain {
  readonly streamId: string
  /** The key that seals the next batch (a test may switch it, as a key rotation does). */
  key: TestKey
  readonly sealed: SealedBatch[] = []
  #prev: Uint8Array = new Uint8Array(0)

  constructor(streamId: string, key: TestKey) {
    this.streamId = streamId
    this.key = key
  }

  get nextSequence(): number {
    return this.sealed.length + 1
  }

  next(records: WireRecord[] | string[] = [], overrides: Partial<Batch> = {}): SealedBatch {
    const recs = records.length > 0 && typeof records[0] === 'string' ? linesToRecords(records as string[]) : (records as WireRecord[])
    const s = seal(batchOf(this.streamId, this.nextSequence, this.#prev, recs, overrides), this.key)
    this.sealed.push(s)
    this.#prev = batchDigest(s.batch)
    return s
  }

  /** `count` batches of `linesEach` generated event lines each. */
  grow(count: number, linesEach = 3): SealedBatch[] {
    const out: SealedBatch[] = []
    for (let i = 0; i < count; i++) {
      const n = this.nextSequence
      out.push(this.next(Array.from({ length: linesEach }, (_, j) => eventLine(n, j))))
    }
    return out
  }
}

export function eventLine(batch: number, index: number): string {
  return JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'Metadata', auditID: `${batch}-${index}`, verb: 'get', requestURI: `/api/v1/namespaces/default/pods/p${index}` })
}

export interface RawResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/** A plain HTTP request, so that tests can send exactly the bytes and headers they mean. */
export function post(url: string, path: string, body: Uint8Array, headers: Record<string, string> = {}, method = 'POST'): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, url), { method, headers: { 'content-type': 'application/proto', ...headers } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

export function gzip(bytes: Uint8Array): Buffer {
  return gzipSync(bytes)
}

/**
 * A small deterministic inspector for index and query tests (the real rule pack
 * is elsewhere): what a guardrail would flag in the generated traffic.
 */
export function sampleFindings(line: string): Array<Omit<Finding, 'recordIndex'>> {
  const e = JSON.parse(line) as { auditID: string; verb?: string; user?: { username?: string }; objectRef?: { resource?: string; subresource?: string }; responseStatus?: { code?: number } }
  const out: Array<Omit<Finding, 'recordIndex'>> = []
  const user = e.user?.username ?? ''
  const resource = e.objectRef?.resource
  const f = (id: string, severity: Finding['severity'], source: Finding['source'], message: string) => out.push({ id, severity, source, message, auditId: e.auditID, details: {} })
  if (resource === 'secrets' && !user.startsWith('system:') && ['get', 'list', 'watch'].includes(e.verb ?? '')) f('secret-read-by-human', 'high', 'rule', `${user} read secrets`)
  if ((resource === 'clusterrolebindings' || resource === 'rolebindings') && ['create', 'update', 'patch', 'delete'].includes(e.verb ?? '')) f('rbac-binding-change', 'critical', 'rule', `${user} changed a ${resource}`)
  if (resource === 'pods' && e.objectRef?.subresource === 'exec') f('pod-exec', 'high', 'rule', `${user} exec'd into a pod`)
  if (e.responseStatus?.code === 403) f('forbidden-burst', 'medium', 'detector', `${user} was denied`)
  if (user === 'system:anonymous') f('anonymous-request', 'low', 'rule', 'anonymous request')
  return out
}

export interface GeneratedBatches {
  /** Every event line, in stream order. */
  lines: string[]
  /** Sealed batches per stream, in sequence order. */
  chains: Chain[]
}

/**
 * Generated audit events sealed into batches of `perBatch` lines with their
 * sample findings, spread round-robin (batch by batch) over `streams` streams.
 * `eventsPerSecond` sets the events' clock (a low rate spreads them over hours).
 */
export function generatedBatches(options: { events: number; perBatch: number; streams?: string[]; key?: TestKey; seed?: number; startTimeMs?: number; eventsPerSecond?: number }): GeneratedBatches {
  const key = options.key ?? testKey()
  const chains = (options.streams ?? ['node-a']).map((s) => new Chain(s, key))
  const generator = createAuditEventGenerator({ seed: options.seed ?? 1, startTimeMs: options.startTimeMs ?? Date.parse('2026-11-25T10:00:00Z'), eventsPerSecond: options.eventsPerSecond ?? 50 })
  const lines: string[] = []
  for (let n = 0; lines.length < options.events; n++) {
    const batch = Array.from({ length: Math.min(options.perBatch, options.events - lines.length) }, () => generator.next())
    lines.push(...batch)
    const findings = batch.flatMap((l, recordIndex) => sampleFindings(l).map((f) => ({ ...f, recordIndex })))
    chains[n % chains.length]!.next(batch, { findings })
  }
  return { lines, chains }
}

/** Appends a sealed batch through the store interface with no chain check of its own (what a test builds is what is stored). */
export function appendSealed(store: BatchStore, streamId: string, sealed: SealedBatch): Promise<'appended' | 'stored'> {
  return store.append(streamId, { batch: decodeBatch(sealed.batch), sealed, digest: batchDigest(sealed.batch) }, async () => 'append')
}
