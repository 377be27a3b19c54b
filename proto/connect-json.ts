// Connect's JSON codec (application/json) for the collector's two procedures, by
// the proto3 JSON mapping (https://protobuf.dev/programming-guides/json/): field
// names in lowerCamelCase (the .proto names accepted too), bytes as base64
// (standard or URL-safe, padded or not), 64-bit integers as decimal strings
// (numbers accepted when exact), defaults omitted, unknown fields refused.
//
// JSON becomes the same typed values as the binary codec gives (proto/wire.ts),
// so both go through one set of checks; a batch's bytes arrive as base64 and are
// verified as they were signed, never re-encoded.
import { DEFAULT_WIRE_LIMITS, WireError, WireLimitError, type GetStreamHeadRequest, type PushBatchResponse, type SealedBatch, type WireLimits } from './wire.ts'

export const JSON_CONTENT_TYPE = 'application/json'

type JsonObject = Record<string, unknown>

export function decodePushBatchRequestJson(body: Uint8Array, limits: Pick<WireLimits, 'maxBatchesPerRequest'> = DEFAULT_WIRE_LIMITS): SealedBatch[] {
  const m = fields(parse(body), 'request', { batches: 'batches' })
  if (m.batches === undefined) return []
  if (!Array.isArray(m.batches)) throw new WireError('request.batches', 'must be a JSON array')
  if (m.batches.length > limits.maxBatchesPerRequest) {
    throw new WireLimitError('request.batches', `more than ${limits.maxBatchesPerRequest} batches per request, over the limit; send fewer at a time (the agent's collector.maxBatchesPerRequest)`)
  }
  return m.batches.map((b, i) => sealedFromJson(b, `request.batches[${i}]`))
}

export function encodePushBatchResponseJson(r: PushBatchResponse): Uint8Array {
  return Buffer.from(JSON.stringify(omitDefaults({ streamId: r.streamId, acknowledgedSequence: String(r.acknowledgedSequence) })))
}

export function decodeGetStreamHeadRequestJson(body: Uint8Array): GetStreamHeadRequest {
  const m = fields(parse(body), 'request', { streamId: 'stream_id', keyId: 'key_id', issuedUnixMs: 'issued_unix_ms', signature: 'signature' })
  return {
    streamId: str(m.streamId, 'request.stream_id'),
    keyId: str(m.keyId, 'request.key_id'),
    issuedUnixMs: int64(m.issuedUnixMs, 'request.issued_unix_ms', false),
    signature: bytes(m.signature, 'request.signature'),
  }
}

export function encodeGetStreamHeadResponseJson(head: SealedBatch | undefined): Uint8Array {
  return Buffer.from(JSON.stringify(head ? { head: sealedToJson(head) } : {}))
}

function parse(body: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'))
  } catch (err) {
    throw new WireError('request', `not valid JSON (${(err as Error).message.slice(0, 200)})`)
  }
}

/**
 * The message's fields by their JSON names; `names` maps each JSON name to its .proto name, which is
 * accepted as well. A null is the field's default (absent); any other key is refused, named.
 */
function fields<K extends string>(v: unknown, field: string, names: Record<K, string>): Partial<Record<K, unknown>> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new WireError(field, 'must be a JSON object')
  const byName = new Map<string, K>()
  for (const [json, proto] of Object.entries(names) as Array<[K, string]>) {
    byName.set(json, json)
    byName.set(proto, json)
  }
  const out: Partial<Record<K, unknown>> = {}
  for (const [key, value] of Object.entries(v as JsonObject)) {
    const name = byName.get(key)
    if (name === undefined) throw new WireError(`${field}.${key.slice(0, 64)}`, `unknown field; ${field} has ${Object.values(names).join(', ')}`)
    if (out[name] !== undefined) throw new WireError(`${field}.${names[name]}`, 'given twice (by its JSON and its .proto name)')
    if (value !== null) out[name] = value
  }
  return out
}

function sealedFromJson(v: unknown, field: string): SealedBatch {
  const m = fields(v, field, { batch: 'batch', signature: 'signature', keyId: 'key_id', algorithm: 'algorithm' })
  const batch = bytes(m.batch, `${field}.batch`)
  if (batch.length === 0) throw new WireError(`${field}.batch`, 'empty')
  return { batch, signature: bytes(m.signature, `${field}.signature`), keyId: str(m.keyId, `${field}.key_id`), algorithm: str(m.algorithm, `${field}.algorithm`) }
}

function sealedToJson(s: SealedBatch): JsonObject {
  return omitDefaults({ batch: base64(s.batch), signature: base64(s.signature), keyId: s.keyId, algorithm: s.algorithm })
}

/** proto3 JSON leaves out fields that hold their default ('' for strings and bytes, "0" for integers). */
function omitDefaults(o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== '' && v !== '0'))
}

function str(v: unknown, field: string): string {
  if (v === undefined) return ''
  if (typeof v !== 'string') throw new WireError(field, 'must be a JSON string')
  return v
}

const BASE64 = /^(?:[A-Za-z0-9+/]*|[A-Za-z0-9_-]*)={0,2}$/

function bytes(v: unknown, field: string): Buffer {
  if (v === undefined) return Buffer.alloc(0)
  // Node's decoder skips characters it does not know: check the alphabet first, so that garbage is an error.
  if (typeof v !== 'string' || !BASE64.test(v) || v.replace(/=+$/, '').length % 4 === 1) throw new WireError(field, 'must be a base64 string (standard or URL-safe)')
  return Buffer.from(v, 'base64')
}

function base64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64')
}

/** A 64-bit integer as proto3 JSON writes it (a decimal string) or a JSON number; only values exact in a double are taken. */
function int64(v: unknown, field: string, unsigned: boolean): number {
  if (v === undefined) return 0
  const n = typeof v === 'string' && /^-?\d{1,20}$/.test(v) ? Number(v) : typeof v === 'number' ? v : NaN
  if (!Number.isInteger(n)) throw new WireError(field, 'must be an integer, as a decimal string or a JSON number')
  if (!Number.isSafeInteger(n)) throw new WireError(field, 'out of range')
  if (unsigned && n < 0) throw new WireError(field, 'must not be negative')
  return n
}
