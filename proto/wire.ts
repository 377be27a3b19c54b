// Typed encoding and decoding of the messages in auditrail/v2/collector.proto.
// Both the agent and the collector go through this module: wire bytes become
// typed values here, once, and a malformed message fails with the field named.
import { createHash } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import protobuf from 'protobufjs'

const protoFile = fileURLToPath(new URL('./auditrail/v2/collector.proto', import.meta.url))
const root = protobuf.loadSync(protoFile)
const types = {
  Batch: root.lookupType('auditrail.v2.Batch'),
  Record: root.lookupType('auditrail.v2.Record'),
  SealedBatch: root.lookupType('auditrail.v2.SealedBatch'),
  PushBatchRequest: root.lookupType('auditrail.v2.PushBatchRequest'),
  PushBatchResponse: root.lookupType('auditrail.v2.PushBatchResponse'),
  GetStreamHeadRequest: root.lookupType('auditrail.v2.GetStreamHeadRequest'),
  GetStreamHeadResponse: root.lookupType('auditrail.v2.GetStreamHeadResponse'),
}

export const SERVICE_PATH = '/auditrail.v2.CollectorService'
export const PUSH_BATCH_PATH = `${SERVICE_PATH}/PushBatch`
export const GET_STREAM_HEAD_PATH = `${SERVICE_PATH}/GetStreamHead`
/** Version 1's service, refused by name so that an old agent is told what to do. */
export const V1_SERVICE_PATH = '/auditrail.v1.CollectorService'
export const DIGEST_LENGTH = 32

export interface SourceFile {
  path: string
  device: number
  inode: number
  fingerprint: Uint8Array
  fingerprintLength: number
  startOffset: number
  endOffset: number
  /** The batch read the file to its end: the next batch starts the next file. */
  endOfFile: boolean
  /** Rotation order (see the .proto): 0 while unknown. */
  rotatedUnixMs: number
  liveAfterUnixMs: number
}

export interface Quarantine {
  length: number
  sha256: Uint8Array
  reason: string
  storedAs: string
}

export interface Gap {
  path: string
  fromOffset: number
  /** 0 when the end of the lost range is unknown. */
  toOffset: number
  reason: string
}

/** Exactly one of line, quarantine and gap is set. */
export interface WireRecord {
  offset: number
  line?: Uint8Array
  quarantine?: Quarantine
  gap?: Gap
  unparsedReason?: string
  redactedPaths?: string[]
}

export type Severity = 'info' | 'low' | 'medium' | 'high' | 'critical'
export const SEVERITIES: readonly Severity[] = ['info', 'low', 'medium', 'high', 'critical']

export function isSeverity(v: unknown): v is Severity {
  return typeof v === 'string' && (SEVERITIES as readonly string[]).includes(v)
}

/** Position in SEVERITIES, lowest first (info 0 ... critical 4): severities compare by it. */
export function severityRank(s: Severity): number {
  return SEVERITIES.indexOf(s)
}

export interface Finding {
  recordIndex: number
  source: 'rule' | 'detector'
  id: string
  severity: Severity
  message: string
  auditId: string
  details: Record<string, string>
}

/** The stream's previous key hands it over to the key that signs this batch. */
export interface KeyRotation {
  previousKeyId: string
  endorsement: Uint8Array
}

export interface Batch {
  streamId: string
  sequence: number
  /** Empty for sequence 1. */
  prevDigest: Uint8Array
  createdUnixMs: number
  node: string
  source: SourceFile
  records: WireRecord[]
  findings: Finding[]
  keyRotation?: KeyRotation
}

export interface SealedBatch {
  batch: Uint8Array
  signature: Uint8Array
  keyId: string
  algorithm: string
}

export interface PushBatchResponse {
  streamId: string
  acknowledgedSequence: number
}

/** A wire message that cannot be turned into a typed value; `field` names the culprit. */
export class WireError extends Error {
  readonly field: string
  constructor(field: string, problem: string) {
    super(`${field}: ${problem}`)
    this.name = 'WireError'
    this.field = field
  }
}

/**
 * A message with more entries in a repeated field than the reader allows; found while
 * reading, before the entries are decoded, so that a small body cannot build a huge object.
 */
export class WireLimitError extends WireError {
  constructor(field: string, problem: string) {
    super(field, problem)
    this.name = 'WireLimitError'
  }
}

/** How many entries of the repeated fields a decoder reads before it gives up (WireLimitError). */
export interface WireLimits {
  /** PushBatchRequest.batches */
  maxBatchesPerRequest: number
  /** Batch.records and Batch.findings, each; a batch's redacted paths, and its finding details, NESTED_PER_RECORD times this each. */
  maxRecordsPerBatch: number
}

export const DEFAULT_WIRE_LIMITS: Readonly<WireLimits> = Object.freeze({ maxBatchesPerRequest: 64, maxRecordsPerBatch: 20_000 })
/** Redacted paths and finding details per record, on average over a batch: far above what the agent writes. */
const NESTED_PER_RECORD = 16

/** SHA-256 of a batch's bytes: what the next batch's prev_digest must hold. */
export function batchDigest(batchBytes: Uint8Array): Buffer {
  return createHash('sha256').update(batchBytes).digest()
}

// Framing by hand. protobufjs writes each embedded message into a growing buffer, one byte
// reserved for its length, then moves the message when its length needs more bytes: every
// record and finding of a batch, and every batch of a request, was copied two or three times,
// and the writer took 9% of the agent's time on a real apiserver log (where half the events
// carry a finding). A protobuf message is the concatenation of its fields, so the small
// fields still go through protobufjs, and only the bulky, repeated ones (a record that is an
// offset and a line, a finding, a sealed batch's batch bytes) are framed here, sized first
// and written once into a buffer of the exact size. The bytes are exactly those protobufjs
// writes (test/proto/wire-framing.test.ts holds them to it), so the collector and the
// verifier, which decode with protobufjs, see no difference.

/** Tag bytes: field number << 3 | wire type (0 varint, 2 length-delimited). */
const tag = (field: number, wireType: 0 | 2) => (field << 3) | wireType
const RECORD_TAG = tag(7, 2)
const FINDING_TAG = tag(8, 2)
const SEALED_BATCH_TAG = tag(1, 2)
const BATCH_BYTES_TAG = tag(1, 2)
const { utf8 } = protobuf.util

/** Bytes of a varint holding `n` (a non-negative safe integer). */
function varintSize(n: number): number {
  let size = 1
  while (n >= 128) {
    n = Math.floor(n / 128)
    size++
  }
  return size
}

function writeVarint(out: Buffer, pos: number, n: number): number {
  while (n >= 128) {
    out[pos++] = (n % 128) | 128
    n = Math.floor(n / 128)
  }
  out[pos++] = n
  return pos
}

// protobufjs (on Node) encodes a string of under 40 UTF-16 units with its own coder and a longer
// one with Buffer's; the two differ on a lone surrogate (which an audit line can hold), so do we.
function utf8Size(s: string): number {
  return s.length < 40 ? utf8.length(s) : Buffer.byteLength(s)
}

function writeUtf8(out: Buffer, pos: number, s: string, size: number): number {
  if (s.length < 40) utf8.write(s, out, pos)
  else out.write(s, pos, size, 'utf8')
  return pos + size
}

/** Byte lengths measured by the sizing pass, in the order the writing pass needs them again. */
class Sizes {
  #list = new Uint32Array(4096)
  #length = 0
  #next = 0
  add(n: number): number {
    if (this.#length === this.#list.length) {
      const grown = new Uint32Array(this.#list.length * 2)
      grown.set(this.#list)
      this.#list = grown
    }
    this.#list[this.#length++] = n
    return n
  }
  take(): number {
    return this.#list[this.#next++]!
  }
  clear(): void {
    this.#length = 0
    this.#next = 0
  }
}

/** A length-delimited field of `size` bytes, with its tag and length. */
function fieldSize(size: number): number {
  return 1 + varintSize(size) + size
}

const REDACTED_PATH_TAG = tag(6, 2)

/** The common record: an offset and a line, perhaps redacted (half the lines of a real log can be). */
function isLineRecord(r: WireRecord): r is WireRecord & { line: Uint8Array } {
  return r.line != null && r.quarantine == null && r.gap == null && !r.unparsedReason
}

/** Size of a line record's body (protobufjs leaves out an offset of 0, the proto3 default); path sizes go to `sizes`. */
function lineRecordSize(r: WireRecord & { line: Uint8Array }, sizes: Sizes): number {
  let size = (r.offset !== 0 ? 1 + varintSize(r.offset) : 0) + fieldSize(r.line.length)
  const paths = r.redactedPaths
  if (paths) for (let i = 0; i < paths.length; i++) size += fieldSize(sizes.add(utf8Size(paths[i]!)))
  return size
}

function writeLineRecord(out: Buffer, pos: number, r: WireRecord & { line: Uint8Array }, sizes: Sizes): number {
  if (r.offset !== 0) {
    out[pos++] = tag(1, 0)
    pos = writeVarint(out, pos, r.offset)
  }
  out[pos++] = tag(2, 2)
  pos = writeVarint(out, pos, r.line.length)
  out.set(r.line, pos)
  pos += r.line.length
  const paths = r.redactedPaths
  if (paths) {
    for (let i = 0; i < paths.length; i++) {
      const size = sizes.take()
      out[pos++] = REDACTED_PATH_TAG
      pos = writeUtf8(out, writeVarint(out, pos, size), paths[i]!, size)
    }
  }
  return pos
}

// A finding's source, rule id and severity, its details' keys and most of their values (a rule's title
// and techniques, a group's id) are the same strings finding after finding: their bytes are kept, so
// that sizing and writing them is a lookup and a copy. Its message and audit ID differ every time.
// Bounded: the memo is emptied when full (a detector's figures vary too), and keeps no long string.
const REPEATED_STRINGS_MAX = 4096
const REPEATED_STRING_MAX_LENGTH = 256
const repeatedStrings = new Map<string, Uint8Array>()

function repeatedBytes(s: string): Uint8Array {
  let bytes = repeatedStrings.get(s)
  if (bytes === undefined) {
    const size = utf8Size(s)
    // Not allocUnsafe: a small one is a slice of a shared pool, and each kept would keep its pool alive.
    bytes = Buffer.allocUnsafeSlow(size)
    writeUtf8(bytes as Buffer, 0, s, size)
    if (s.length > REPEATED_STRING_MAX_LENGTH) return bytes
    if (repeatedStrings.size >= REPEATED_STRINGS_MAX) repeatedStrings.clear()
    repeatedStrings.set(s, bytes)
  }
  return bytes
}

function writeBytes(out: Buffer, pos: number, bytes: Uint8Array): number {
  pos = writeVarint(out, pos, bytes.length)
  // Most are a few bytes: a loop beats set() there.
  if (bytes.length < 32) for (let i = 0; i < bytes.length; i++) out[pos + i] = bytes[i]!
  else out.set(bytes, pos)
  return pos + bytes.length
}

const REPEATED_FINDING_STRINGS = [[2, 'source'], [3, 'id'], [4, 'severity']] as const
const VARYING_FINDING_STRINGS = [[5, 'message'], [6, 'auditId']] as const

/** Size of a finding's body (protobufjs leaves out a record index of 0 and empty strings); varying string sizes go to `sizes`. */
function findingSize(f: Finding, sizes: Sizes): number {
  let size = f.recordIndex ? 1 + varintSize(f.recordIndex) : 0
  for (const [, name] of REPEATED_FINDING_STRINGS) if (f[name]) size += fieldSize(repeatedBytes(f[name]).length)
  for (const [, name] of VARYING_FINDING_STRINGS) if (f[name]) size += fieldSize(sizes.add(utf8Size(f[name])))
  if (f.details) {
    for (const key in f.details) size += fieldSize(fieldSize(repeatedBytes(key).length) + fieldSize(repeatedBytes(f.details[key]!).length))
  }
  return size
}

function writeFinding(out: Buffer, pos: number, f: Finding, sizes: Sizes): number {
  if (f.recordIndex) {
    out[pos++] = tag(1, 0)
    pos = writeVarint(out, pos, f.recordIndex)
  }
  // Fields in field-number order, as protobufjs writes them.
  for (const [field, name] of REPEATED_FINDING_STRINGS) {
    if (!f[name]) continue
    out[pos++] = tag(field, 2)
    pos = writeBytes(out, pos, repeatedBytes(f[name]))
  }
  for (const [field, name] of VARYING_FINDING_STRINGS) {
    if (!f[name]) continue
    out[pos++] = tag(field, 2)
    const size = sizes.take()
    pos = writeUtf8(out, writeVarint(out, pos, size), f[name], size)
  }
  if (f.details) {
    for (const key in f.details) {
      // A map entry is a message of its own: key (field 1), value (field 2).
      const keyBytes = repeatedBytes(key)
      const valueBytes = repeatedBytes(f.details[key]!)
      out[pos++] = tag(7, 2)
      pos = writeVarint(out, pos, fieldSize(keyBytes.length) + fieldSize(valueBytes.length))
      out[pos++] = tag(1, 2)
      pos = writeBytes(out, pos, keyBytes)
      out[pos++] = tag(2, 2)
      pos = writeBytes(out, pos, valueBytes)
    }
  }
  return pos
}

/**
 * A batch's records and findings, encoded as they are added: the agent's open batch holds
 * them as bytes, not as objects. Held as objects (a record, a view of its line, a finding
 * and its details per event) until the batch was sealed, they outlived the young
 * generation and were promoted: the old generation grew by megabytes a second at full
 * speed, garbage that only a full collection freed. Records and findings go to storage
 * of their own (records come first in the batch), kept for the next batch by `clear`.
 */
export class BatchBody {
  #records: Buffer = Buffer.alloc(0)
  #recordsEnd = 0
  #findings: Buffer = Buffer.alloc(0)
  #findingsEnd = 0
  readonly #sizes = new Sizes()
  #count = 0

  /** A body holding `records`, then `findings`. */
  static of(records: readonly WireRecord[], findings: readonly Finding[] = []): BatchBody {
    const body = new BatchBody()
    for (const r of records) body.addRecord(r)
    for (const f of findings) body.addFinding(f)
    return body
  }

  get recordCount(): number {
    return this.#count
  }

  /** Bytes of the records and findings, framed: what they add to the batch. */
  get byteLength(): number {
    return this.#recordsEnd + this.#findingsEnd
  }

  addRecord(r: WireRecord): void {
    this.#count++
    // Records that are not a line (quarantine, gap, unparsed: rare) are encoded whole by protobufjs.
    const encoded = isLineRecord(r) ? undefined : types.Record.encode(r as unknown as Record<string, unknown>).finish()
    this.#sizes.clear()
    const size = encoded ? encoded.length : lineRecordSize(r as WireRecord & { line: Uint8Array }, this.#sizes)
    const out = (this.#records = room(this.#records, this.#recordsEnd, fieldSize(size)))
    let pos = this.#recordsEnd
    out[pos++] = RECORD_TAG
    pos = writeVarint(out, pos, size)
    if (encoded) {
      out.set(encoded, pos)
      pos += encoded.length
    } else {
      pos = writeLineRecord(out, pos, r as WireRecord & { line: Uint8Array }, this.#sizes)
    }
    this.#recordsEnd = pos
  }

  /** A finding of a record already added (its recordIndex). */
  addFinding(f: Finding): void {
    this.#sizes.clear()
    const size = findingSize(f, this.#sizes)
    const out = (this.#findings = room(this.#findings, this.#findingsEnd, fieldSize(size)))
    out[this.#findingsEnd] = FINDING_TAG
    this.#findingsEnd = writeFinding(out, writeVarint(out, this.#findingsEnd + 1, size), f, this.#sizes)
  }

  /** Writes the records, then the findings, at `pos`; returns the position after them. */
  copyTo(out: Buffer, pos: number): number {
    out.set(this.#records.subarray(0, this.#recordsEnd), pos)
    out.set(this.#findings.subarray(0, this.#findingsEnd), pos + this.#recordsEnd)
    return pos + this.byteLength
  }

  /** Empty again; the storage stays for the next batch. */
  clear(): void {
    this.#recordsEnd = 0
    this.#findingsEnd = 0
    this.#count = 0
  }
}

/** `buffer` with room for `n` more bytes after `end`: itself, or a bigger copy (doubled, so that a batch grows it a few times at most). */
function room(buffer: Buffer, end: number, n: number): Buffer {
  if (end + n <= buffer.length) return buffer
  const grown = Buffer.allocUnsafe(Math.max(64 * 1024, buffer.length * 2, end + n))
  buffer.copy(grown, 0, 0, end)
  return grown
}

/** `alloc(size)` gives the buffer the batch is written to: a new one by default; the agent's sealer reuses its space (agent/ship/batch-ring.ts). */
export function encodeBatch(batch: Batch, alloc: (size: number) => Buffer = Buffer.allocUnsafe): Uint8Array {
  const { records, findings, ...header } = batch
  return encodeBatchWithBody(header, BatchBody.of(records, findings ?? []), alloc)
}

/** A batch whose records and findings are already encoded in `body`; the same bytes as encodeBatch. */
export function encodeBatchWithBody(header: Omit<Batch, 'records' | 'findings'>, body: BatchBody, alloc: (size: number) => Buffer = Buffer.allocUnsafe): Uint8Array {
  const { keyRotation, ...fields } = header
  const head = types.Batch.encode(fields as unknown as Record<string, unknown>).finish()
  const tail = keyRotation ? types.Batch.encode({ keyRotation }).finish() : new Uint8Array(0)
  const out = alloc(head.length + body.byteLength + tail.length)
  out.set(head, 0)
  out.set(tail, body.copyTo(out, head.length))
  return out
}

export function decodeBatch(bytes: Uint8Array, limits: Pick<WireLimits, 'maxRecordsPerBatch'> = DEFAULT_WIRE_LIMITS): Batch {
  const nested = limits.maxRecordsPerBatch * NESTED_PER_RECORD
  const m = decode(types.Batch, bytes, 'batch', {
    records: { max: limits.maxRecordsPerBatch, field: 'batch.records', unit: 'records per batch', todo: 'send fewer (the agent\'s batch.maxEvents)' },
    findings: { max: limits.maxRecordsPerBatch, field: 'batch.findings', unit: 'findings per batch', todo: 'send fewer records per batch (the agent\'s batch.maxEvents)' },
    redactedPaths: { max: nested, field: 'batch.records[].redacted_paths', unit: 'redacted paths per batch', todo: 'send fewer records per batch (the agent\'s batch.maxEvents)' },
    details: { max: nested, field: 'batch.findings[].details', unit: 'finding details per batch', todo: 'send fewer records per batch, or fewer details per finding' },
  }) as RawBatch
  const sequence = uint(m.sequence, 'batch.sequence')
  if (sequence < 1) throw new WireError('batch.sequence', 'must be 1 or more')
  const prevDigest = bytesOf(m.prevDigest)
  if (sequence === 1 ? prevDigest.length !== 0 : prevDigest.length !== DIGEST_LENGTH) {
    throw new WireError('batch.prev_digest', sequence === 1 ? 'must be empty for sequence 1' : `must be ${DIGEST_LENGTH} bytes`)
  }
  const s = m.source
  if (!s) throw new WireError('batch.source', 'missing')
  const records = (m.records ?? []).map((r, i) => decodeRecord(r, i))
  const findings = (m.findings ?? []).map((f, i) => decodeFinding(f, i, records.length))
  return {
    streamId: text(m.streamId, 'batch.stream_id'),
    sequence,
    prevDigest,
    createdUnixMs: int(m.createdUnixMs, 'batch.created_unix_ms'),
    node: text(m.node, 'batch.node'),
    source: {
      path: text(s.path, 'batch.source.path'),
      device: uint(s.device, 'batch.source.device'),
      inode: uint(s.inode, 'batch.source.inode'),
      fingerprint: bytesOf(s.fingerprint),
      fingerprintLength: uint(s.fingerprintLength, 'batch.source.fingerprint_length'),
      startOffset: uint(s.startOffset, 'batch.source.start_offset'),
      endOffset: uint(s.endOffset, 'batch.source.end_offset'),
      endOfFile: s.endOfFile === true,
      rotatedUnixMs: uint(s.rotatedUnixMs, 'batch.source.rotated_unix_ms'),
      liveAfterUnixMs: uint(s.liveAfterUnixMs, 'batch.source.live_after_unix_ms'),
    },
    records,
    findings,
    ...(m.keyRotation ? { keyRotation: { previousKeyId: text(m.keyRotation.previousKeyId, 'batch.key_rotation.previous_key_id'), endorsement: bytesOf(m.keyRotation.endorsement) } } : {}),
  }
}

/**
 * A SealedBatch's bytes, exactly as protobufjs writes them (the batch bytes framed here, the rest by
 * protobufjs, as in encodePushBatchRequest), after `headerBytes` bytes left to the caller: the file
 * store writes its entry header there, so that an entry is one buffer, not an encoding then a copy.
 */
export function encodeSealedBatch(sealed: SealedBatch, headerBytes = 0): Buffer {
  const rest = sealedRest(sealed)
  const out = Buffer.allocUnsafe(headerBytes + sealedSize(sealed, rest))
  writeSealed(out, headerBytes, sealed, rest)
  return out
}

/** A SealedBatch's fields but its batch bytes (signature and names), encoded by protobufjs. */
function sealedRest({ batch: _, ...rest }: SealedBatch): Uint8Array {
  return types.SealedBatch.encode(rest as unknown as Record<string, unknown>).finish()
}

/** Bytes of a SealedBatch: its batch bytes (field 1, left out when empty, as protobufjs does), then `rest`. */
function sealedSize(sealed: SealedBatch, rest: Uint8Array): number {
  return (sealed.batch.length > 0 ? 1 + varintSize(sealed.batch.length) + sealed.batch.length : 0) + rest.length
}

function writeSealed(out: Buffer, pos: number, sealed: SealedBatch, rest: Uint8Array): number {
  const batch = sealed.batch
  if (batch.length > 0) {
    out[pos++] = BATCH_BYTES_TAG
    pos = writeVarint(out, pos, batch.length)
    out.set(batch, pos)
    pos += batch.length
  }
  out.set(rest, pos)
  return pos + rest.length
}

export function decodeSealedBatch(bytes: Uint8Array): SealedBatch {
  return sealedFrom(decode(types.SealedBatch, bytes, 'sealed_batch') as RawSealed, 'sealed_batch')
}

/** `alloc(size)` gives the buffer the request is written to: a new one by default; the agent's sender reuses one (sender.ts). */
export function encodePushBatchRequest(batches: SealedBatch[], alloc: (size: number) => Buffer = Buffer.allocUnsafe): Uint8Array {
  // Each sealed batch: its batch bytes (field 1) framed here, the signature and names (fields 2 to 4) by protobufjs.
  const rests = batches.map(sealedRest)
  const bodies = batches.map((b, i) => sealedSize(b, rests[i]!))
  const out = alloc(bodies.reduce((sum, body) => sum + 1 + varintSize(body) + body, 0))
  let pos = 0
  for (let i = 0; i < batches.length; i++) {
    out[pos++] = SEALED_BATCH_TAG
    pos = writeSealed(out, writeVarint(out, pos, bodies[i]!), batches[i]!, rests[i]!)
  }
  return out
}

export function decodePushBatchRequest(bytes: Uint8Array, limits: Pick<WireLimits, 'maxBatchesPerRequest'> = DEFAULT_WIRE_LIMITS): SealedBatch[] {
  const m = decode(types.PushBatchRequest, bytes, 'request', {
    batches: { max: limits.maxBatchesPerRequest, field: 'request.batches', unit: 'batches per request', todo: 'send fewer at a time (the agent\'s collector.maxBatchesPerRequest)' },
  }) as { batches?: RawSealed[] }
  return (m.batches ?? []).map((b, i) => sealedFrom(b, `request.batches[${i}]`))
}

export function encodePushBatchResponse(r: PushBatchResponse): Uint8Array {
  return types.PushBatchResponse.encode(r as unknown as Record<string, unknown>).finish()
}

export function decodePushBatchResponse(bytes: Uint8Array): PushBatchResponse {
  const m = decode(types.PushBatchResponse, bytes, 'response') as { streamId?: string; acknowledgedSequence?: LongLike }
  return {
    streamId: text(m.streamId, 'response.stream_id'),
    acknowledgedSequence: uint(m.acknowledgedSequence, 'response.acknowledged_sequence'),
  }
}

/** Signed by the caller (proto/signed-messages.ts): only the stream's key may read its head. */
export interface GetStreamHeadRequest {
  streamId: string
  keyId: string
  issuedUnixMs: number
  signature: Uint8Array
}

export function encodeGetStreamHeadRequest(r: GetStreamHeadRequest): Uint8Array {
  return types.GetStreamHeadRequest.encode(r as unknown as Record<string, unknown>).finish()
}

export function decodeGetStreamHeadRequest(bytes: Uint8Array): GetStreamHeadRequest {
  const m = decode(types.GetStreamHeadRequest, bytes, 'request') as { streamId?: string; keyId?: string; issuedUnixMs?: Num; signature?: Uint8Array }
  return {
    streamId: text(m.streamId, 'request.stream_id'),
    keyId: text(m.keyId, 'request.key_id'),
    issuedUnixMs: int(m.issuedUnixMs, 'request.issued_unix_ms'),
    signature: bytesOf(m.signature),
  }
}

export function encodeGetStreamHeadResponse(head: SealedBatch | undefined): Uint8Array {
  return types.GetStreamHeadResponse.encode(head ? { head } : {}).finish()
}

export function decodeGetStreamHeadResponse(bytes: Uint8Array): SealedBatch | undefined {
  const m = decode(types.GetStreamHeadResponse, bytes, 'response') as { head?: RawSealed }
  return m.head ? sealedFrom(m.head, 'response.head') : undefined
}

// --- decoding helpers: protobufjs gives loosely typed objects with Long for 64-bit fields.

interface LongLike { toNumber(): number; high: number; low: number; unsigned: boolean }
type Num = number | LongLike | undefined

interface RawSealed { batch?: Uint8Array; signature?: Uint8Array; keyId?: string; algorithm?: string }
interface RawRecord {
  offset?: Num
  line?: Uint8Array
  quarantine?: { length?: Num; sha256?: Uint8Array; reason?: string; storedAs?: string }
  gap?: { path?: string; fromOffset?: Num; toOffset?: Num; reason?: string }
  unparsedReason?: string
  redactedPaths?: string[]
}
interface RawFinding {
  recordIndex?: number
  source?: string
  id?: string
  severity?: string
  message?: string
  auditId?: string
  details?: Record<string, string>
}
interface RawBatch {
  streamId?: string
  sequence?: Num
  prevDigest?: Uint8Array
  createdUnixMs?: Num
  node?: string
  source?: {
    path?: string
    device?: Num
    inode?: Num
    fingerprint?: Uint8Array
    fingerprintLength?: number
    startOffset?: Num
    endOffset?: Num
    endOfFile?: boolean
    rotatedUnixMs?: Num
    liveAfterUnixMs?: Num
  }
  records?: RawRecord[]
  findings?: RawFinding[]
  keyRotation?: { previousKeyId?: string; endorsement?: Uint8Array }
}

/** The bound on one repeated field (by its protobufjs name), counted over the whole message. */
interface RepeatedLimit {
  max: number
  /** The field as error messages name it, and what is counted. */
  field: string
  unit: string
  /** What the sender should do instead. */
  todo: string
}

/**
 * Decodes a message once its repeated fields are known to be within `limits`: a first pass
 * walks the fields without decoding them and stops at the first entry past a limit. A
 * repeated field without a limit fails here, so that a new one cannot go unbounded.
 */
function decode(type: protobuf.Type, bytes: Uint8Array, what: string, limits: Record<string, RepeatedLimit> = {}): unknown {
  try {
    if (hasRepeated(type)) countRepeated(type, protobuf.Reader.create(bytes), bytes.length, new Map(), limits)
    return type.decode(bytes)
  } catch (err) {
    if (err instanceof WireError) throw err
    throw new WireError(what, `not a valid ${type.name} message (${(err as Error).message})`)
  }
}

/** Types that hold a repeated field, at any depth: only those are walked into. */
const holdsRepeated = new Map<protobuf.Type, boolean>()
function hasRepeated(type: protobuf.Type): boolean {
  let has = holdsRepeated.get(type)
  if (has === undefined) {
    holdsRepeated.set(type, false) // a recursive type ends here
    has = type.fieldsArray.some((f) => {
      const sub = f.resolve().resolvedType
      return f.repeated || f.map || (sub instanceof protobuf.Type && hasRepeated(sub))
    })
    holdsRepeated.set(type, has)
  }
  return has
}

function countRepeated(type: protobuf.Type, reader: protobuf.Reader, end: number, counts: Map<string, number>, limits: Record<string, RepeatedLimit>): void {
  while (reader.pos < end) {
    const tag = reader.uint32()
    const wireType = tag & 7
    const field = type.fieldsById[tag >>> 3]
    if (field && (field.repeated || field.map)) {
      const limit = limits[field.name]
      if (!limit) throw new Error(`${type.name}.${field.name} is repeated and has no limit`)
      const n = (counts.get(field.name) ?? 0) + 1
      if (n > limit.max) throw new WireLimitError(limit.field, `more than ${limit.max} ${limit.unit}, over the limit; ${limit.todo}`)
      counts.set(field.name, n)
    }
    const sub = field?.resolve().resolvedType
    if (wireType === 2 && sub instanceof protobuf.Type && !field!.map && hasRepeated(sub)) {
      const length = reader.uint32()
      const subEnd = reader.pos + length
      if (subEnd > end) throw new RangeError(`index out of range: ${subEnd} + 0 > ${end}`)
      countRepeated(sub, reader, subEnd, counts, limits)
    } else {
      reader.skipType(wireType)
    }
  }
  if (reader.pos > end) throw new RangeError(`index out of range: ${reader.pos} > ${end}`)
}

function sealedFrom(m: RawSealed, field: string): SealedBatch {
  const batch = bytesOf(m.batch)
  if (batch.length === 0) throw new WireError(`${field}.batch`, 'empty')
  return {
    batch,
    signature: bytesOf(m.signature),
    keyId: text(m.keyId, `${field}.key_id`),
    algorithm: text(m.algorithm, `${field}.algorithm`),
  }
}

function decodeRecord(r: RawRecord, i: number): WireRecord {
  const field = `batch.records[${i}]`
  const record: WireRecord = { offset: uint(r.offset, `${field}.offset`) }
  // protobufjs puts defaults on the prototype: only an own property says which of the oneof was sent.
  if (Object.hasOwn(r, 'line')) record.line = bytesOf(r.line)
  else if (Object.hasOwn(r, 'quarantine') && r.quarantine) {
    record.quarantine = {
      length: uint(r.quarantine.length, `${field}.quarantine.length`),
      sha256: bytesOf(r.quarantine.sha256),
      reason: text(r.quarantine.reason, `${field}.quarantine.reason`),
      storedAs: text(r.quarantine.storedAs, `${field}.quarantine.stored_as`),
    }
  } else if (Object.hasOwn(r, 'gap') && r.gap) {
    record.gap = {
      path: text(r.gap.path, `${field}.gap.path`),
      fromOffset: uint(r.gap.fromOffset, `${field}.gap.from_offset`),
      toOffset: uint(r.gap.toOffset, `${field}.gap.to_offset`),
      reason: text(r.gap.reason, `${field}.gap.reason`),
    }
  } else {
    throw new WireError(field, 'has none of line, quarantine, gap')
  }
  if (r.unparsedReason) record.unparsedReason = r.unparsedReason
  if (r.redactedPaths && r.redactedPaths.length > 0) record.redactedPaths = r.redactedPaths.slice()
  return record
}

function decodeFinding(f: RawFinding, i: number, recordCount: number): Finding {
  const field = `batch.findings[${i}]`
  const recordIndex = f.recordIndex ?? 0
  if (recordIndex >= recordCount) throw new WireError(`${field}.record_index`, `${recordIndex} is past the last record`)
  const source = f.source
  if (source !== 'rule' && source !== 'detector') throw new WireError(`${field}.source`, 'must be "rule" or "detector"')
  const severity = f.severity as Severity
  if (!SEVERITIES.includes(severity)) throw new WireError(`${field}.severity`, `must be one of ${SEVERITIES.join(', ')}`)
  return {
    recordIndex,
    source,
    id: text(f.id, `${field}.id`),
    severity,
    message: f.message ?? '',
    auditId: f.auditId ?? '',
    details: { ...(f.details ?? {}) },
  }
}

/** Empty bytes fields decode as a plain array default: always hand out a Buffer. */
function bytesOf(v: Uint8Array | undefined): Buffer {
  if (v instanceof Buffer) return v
  return v && v.length > 0 ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : Buffer.alloc(0)
}

function text(v: string | undefined, field: string): string {
  if (typeof v !== 'string') throw new WireError(field, 'missing')
  return v
}

function uint(v: Num, field: string): number {
  const n = int(v, field)
  if (n < 0) throw new WireError(field, 'must not be negative')
  return n
}

function int(v: Num, field: string): number {
  if (v === undefined || v === null) return 0
  const n = typeof v === 'number' ? v : v.toNumber()
  if (!Number.isSafeInteger(n)) throw new WireError(field, 'out of range')
  return n
}
