// Builds signed batch chains the way the agent's sealer does (same proto/ codecs),
// for collector, verifier and end-to-end tests.
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import { request } from 'node:http'
import { gzipSync } from 'node:zlib'
import { keyIdOf, signBytes } from '../../proto/keys.ts'
import { batchDigest, encodeBatch, SIGNATURE_ALGORITHM, type Batch, type SealedBatch, type WireRecord } from '../../proto/wire.ts'

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
  return { batch: bytes, signature: signBytes(bytes, key.privateKey), keyId: key.keyId, algorithm: SIGNATURE_ALGORITHM }
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
  readonly key: TestKey
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
