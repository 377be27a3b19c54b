// The offline verifier: checks every stream of a store end to end, reading it
// (never writing it), one entry in memory at a time. It stops at the first bad
// place and names it: stream, sequence, why, and in a file store the segment
// file and byte offset. Both stores are read through the same interface; a
// database is not trusted more than a directory: every seal and link is checked.
import type { KeyObject } from 'node:crypto'
import { batchDigest, decodeBatch, decodeSealedBatch, WireError, type Batch, type SealedBatch } from '../proto/wire.ts'
import { checkKeyContinuity, checkSeal } from './seal.ts'
import { reading } from './store/open.ts'
import type { BatchStore, LocatedBatch } from './store/store.ts'

export interface VerifyProblem {
  stream: string
  /** Segment file name, when the problem is inside one. */
  segment?: string
  offset?: number
  /** The sequence number found, or the one expected at that place when the entry cannot be trusted. */
  sequence?: number
  reason: string
}

export interface StreamSummary {
  stream: string
  /** Batches are numbered 1..headSequence without a gap. */
  headSequence: number
  lines: number
  /** Hex SHA-256 of the head batch: compare it with the agent's checkpoint to see that nothing was cut off the end. */
  headDigest: string
}

export interface VerifyResult {
  ok: boolean
  /** Streams checked in full before the first problem (all of them when ok). */
  streams: StreamSummary[]
  problem?: VerifyProblem
}

/** `store`: an open store, or a directory or URL to open for the check. */
export function verifyStore(store: BatchStore | string, trustedKeys: ReadonlyMap<string, KeyObject>, options: { stream?: string } = {}): Promise<VerifyResult> {
  return reading(store, (s) => verifyStreams(s, trustedKeys, options))
}

async function verifyStreams(store: BatchStore, trustedKeys: ReadonlyMap<string, KeyObject>, options: { stream?: string }): Promise<VerifyResult> {
  const all = await store.streams()
  if (options.stream !== undefined && !all.includes(options.stream)) {
    return { ok: false, streams: [], problem: { stream: options.stream, reason: `no stream ${JSON.stringify(options.stream)} in ${store.name} (streams: ${all.join(', ') || 'none'})` } }
  }
  const streams = options.stream !== undefined ? [options.stream] : all
  if (streams.length === 0) return { ok: false, streams: [], problem: { stream: '', reason: `${store.name} holds no streams (is it a collector store?)` } }
  const summaries: StreamSummary[] = []
  for (const stream of streams) {
    const result = await verifyStream(store, stream, trustedKeys)
    if ('reason' in result) return { ok: false, streams: summaries, problem: result }
    summaries.push(result)
  }
  return { ok: true, streams: summaries }
}

async function verifyStream(store: BatchStore, stream: string, trustedKeys: ReadonlyMap<string, KeyObject>): Promise<StreamSummary | VerifyProblem> {
  const layout = await store.layoutProblem(stream)
  if (layout) return { stream, ...layout }
  let expected = 1
  let prev: Buffer = Buffer.alloc(0)
  let boundKeyId: string | undefined
  let lines = 0
  /** Entries read so far: where to look again from when telling a gap from a reordering. */
  let position = 0
  for await (const item of store.entries(stream)) {
    if (item.kind === 'empty') {
      if (!item.last || item.first !== expected) {
        return { stream, segment: item.segment, offset: 0, sequence: expected, reason: `empty segment${item.last ? ` named for sequence ${item.first}` : ' before the last one'}, where sequence ${expected} was expected` }
      }
      continue
    }
    const at = { stream, ...item.place, sequence: expected }
    if (item.kind === 'bad') {
      const what = item.torn && item.inLastSegment ? 'truncated' : item.torn ? 'truncated segment (more segments follow)' : 'altered bytes'
      return { ...at, reason: `${what}: ${item.reason}, where sequence ${expected} was expected` }
    }
    position++
    let sealed: SealedBatch
    let batch: Batch
    let digest: Buffer
    try {
      sealed = decodeSealedBatch(item.bytes)
      digest = batchDigest(sealed.batch)
      const problem = checkSeal(sealed, digest, trustedKeys)
      if (problem) return { ...at, reason: `${problem.field === 'signature' ? 'bad signature' : problem.field === 'key_id' ? 'unknown key' : 'unsupported algorithm'}: ${problem.field} ${problem.reason}` }
      batch = decodeBatch(sealed.batch)
    } catch (err) {
      if (err instanceof WireError) return { ...at, reason: `entry does not decode: ${err.message}` }
      throw err
    }
    const found = { ...at, sequence: batch.sequence }
    if (batch.streamId !== stream) return { ...found, reason: `batch belongs to stream ${JSON.stringify(batch.streamId)}, stored under ${JSON.stringify(stream)}` }
    if (batch.sequence !== expected) return { ...found, reason: await sequenceProblem(store, stream, position, expected, batch.sequence, item.segmentFirst !== undefined && expected > 1) }
    if (item.segmentFirst !== undefined && item.segmentFirst !== batch.sequence) return { ...found, reason: `segment name says it starts at sequence ${item.segmentFirst}, but it starts at ${batch.sequence}` }
    if (!prev.equals(Buffer.from(batch.prevDigest))) {
      return { ...found, reason: `broken link: prev_digest ${Buffer.from(batch.prevDigest).toString('hex') || '(empty)'} is not the digest of sequence ${expected - 1} (${prev.toString('hex') || '(empty)'})` }
    }
    const keyProblem = checkKeyContinuity(batch, sealed, boundKeyId, trustedKeys)
    if (keyProblem) return { ...found, reason: `key not bound to the stream: ${keyProblem}` }
    prev = digest
    boundKeyId = sealed.keyId
    lines += batch.records.reduce((n, r) => n + (r.line ? 1 : 0), 0)
    expected++
  }
  return { stream, headSequence: expected - 1, lines, headDigest: prev.toString('hex') }
}

/** Tells a gap from a reordering by looking for the expected sequence further on (only on failure). */
async function sequenceProblem(store: BatchStore, stream: string, position: number, expected: number, found: number, atSegmentStart: boolean): Promise<string> {
  if (found < expected) return `reordering or duplicate: sequence ${found} appears again after ${expected - 1}`
  const later = await findSequence(store, stream, position, expected)
  if (later) return `reordering: sequence ${found} is stored where ${expected} belongs; ${expected} is stored later${later.segment !== undefined ? ` (segment ${later.segment}, byte ${later.offset})` : ''}`
  const range = found - 1 === expected ? `sequence ${expected} is` : `sequences ${expected} to ${found - 1} are`
  return `gap: ${range} missing${atSegmentStart ? ' (a segment file before this one was deleted?)' : ''}`
}

/** Where `wanted` is stored after the first `position` entries, if it is. */
async function findSequence(store: BatchStore, stream: string, position: number, wanted: number): Promise<{ segment?: string; offset?: number } | undefined> {
  let n = 0
  for await (const item of store.entries(stream)) {
    if (item.kind === 'empty') continue
    if (item.kind === 'bad') return undefined
    if (++n <= position) continue
    try {
      if (decodeBatch(decodeSealedBatch(item.bytes).batch).sequence === wanted) return { ...item.place }
    } catch {
      return undefined
    }
  }
  return undefined
}

export interface EventCoordinates {
  stream: string
  sequence: number
  recordIndex: number
}

export interface EventProof {
  ok: boolean
  /** The record's line as stored (when the batch could be read). */
  line?: Buffer
  /** What was checked, one line each, for the operator. */
  checks: string[]
  problem?: VerifyProblem
}

/**
 * Proves one event without reading the whole stream: its batch's entry checksum
 * and signature, the record at that index, the link to batch sequence-1 (its
 * digest equals prev_digest, and its own seal holds), and, when batch sequence+1
 * is stored, that it links to this one. Everything is found again from the
 * segments; nothing the index says is trusted.
 */
export function verifyEvent(store: BatchStore | string, trustedKeys: ReadonlyMap<string, KeyObject>, at: EventCoordinates): Promise<EventProof> {
  return reading(store, (s) => proveEvent(s, trustedKeys, at))
}

async function proveEvent(store: BatchStore, trustedKeys: ReadonlyMap<string, KeyObject>, at: EventCoordinates): Promise<EventProof> {
  const { stream, sequence, recordIndex } = at
  const checks: string[] = []
  // Only the place is taken from `where`: its own reason (a lookup's) is part of `reason` already.
  const fail = (reason: string, where: { segment?: string; offset?: number } = {}): EventProof => ({
    ok: false,
    checks,
    problem: { stream, sequence, reason, ...(where.segment !== undefined ? { segment: where.segment, offset: where.offset } : {}) },
  })
  const streams = await store.streams()
  if (!streams.includes(stream)) return fail(`no stream ${JSON.stringify(stream)} in ${store.name} (streams: ${streams.join(', ') || 'none'})`)

  const target = await sealedAt(store, stream, sequence)
  if ('reason' in target) return fail(target.reason, target)
  const digest = batchDigest(target.sealed.batch)
  const sealProblem = checkSeal(target.sealed, digest, trustedKeys)
  if (sealProblem) return fail(`bad seal on sequence ${sequence}: ${sealProblem.field} ${sealProblem.reason}`, target)
  const batch = decodeBatch(target.sealed.batch)
  if (batch.streamId !== stream) return fail(`batch belongs to stream ${JSON.stringify(batch.streamId)}, stored under ${JSON.stringify(stream)}`, target)
  checks.push(`sequence ${sequence}: ${target.segment !== undefined ? 'checksum and ' : ''}${target.sealed.algorithm} signature by key ${target.sealed.keyId} hold${target.segment !== undefined ? ` (segment ${target.segment}, byte ${target.offset})` : ''}`)
  const record = batch.records[recordIndex]
  if (!record) return fail(`batch ${sequence} has ${batch.records.length} records; there is no record ${recordIndex}`, target)
  if (!record.line) return fail(`record ${recordIndex} of batch ${sequence} is a ${record.gap ? 'gap' : 'quarantine'} record, not an event line`, target)
  checks.push(`record ${recordIndex}: an event line of ${record.line.length} bytes`)

  if (sequence === 1) {
    if (Buffer.from(batch.prevDigest).length !== 0) return fail('sequence 1 must have an empty prev_digest', target)
    const keyProblem = checkKeyContinuity(batch, target.sealed, undefined, trustedKeys)
    if (keyProblem) return fail(keyProblem, target)
    checks.push('link back: sequence 1 starts the chain')
  } else {
    const prev = await sealedAt(store, stream, sequence - 1)
    if ('reason' in prev) return fail(`cannot check the link back: ${prev.reason}`, prev)
    const prevDigest = batchDigest(prev.sealed.batch)
    const p = checkSeal(prev.sealed, prevDigest, trustedKeys)
    if (p) return fail(`bad seal on sequence ${sequence - 1}: ${p.field} ${p.reason}`, prev)
    const keyProblem = checkKeyContinuity(batch, target.sealed, prev.sealed.keyId, trustedKeys)
    if (keyProblem) return fail(`key not bound to the stream: ${keyProblem}`, target)
    if (!prevDigest.equals(Buffer.from(batch.prevDigest))) {
      return fail(`broken link: prev_digest ${Buffer.from(batch.prevDigest).toString('hex')} of sequence ${sequence} is not the digest of sequence ${sequence - 1} (${prevDigest.toString('hex')})`, target)
    }
    checks.push(`link back: prev_digest equals the digest of sequence ${sequence - 1} (${prevDigest.toString('hex')}), whose seal holds`)
  }
  const next = await sealedAt(store, stream, sequence + 1)
  if ('reason' in next) {
    if (!next.absent) return fail(`cannot check the link forward: ${next.reason}`, next)
    checks.push(`link forward: sequence ${sequence} is the stream's head`)
  } else {
    const n = checkSeal(next.sealed, batchDigest(next.sealed.batch), trustedKeys)
    if (n) return fail(`bad seal on sequence ${sequence + 1}: ${n.field} ${n.reason}`, next)
    const nextBatch = decodeBatch(next.sealed.batch)
    const keyProblem = checkKeyContinuity(nextBatch, next.sealed, target.sealed.keyId, trustedKeys)
    if (keyProblem) return fail(`key not bound to the stream at sequence ${sequence + 1}: ${keyProblem}`, next)
    if (!digest.equals(Buffer.from(nextBatch.prevDigest))) {
      return fail(`broken link: sequence ${sequence + 1}'s prev_digest ${Buffer.from(nextBatch.prevDigest).toString('hex')} is not the digest of sequence ${sequence} (${digest.toString('hex')})`, next)
    }
    checks.push(`link forward: sequence ${sequence + 1} (seal holds) names this batch's digest ${digest.toString('hex')}`)
  }
  return { ok: true, line: Buffer.from(record.line), checks }
}

type Located = { sealed: SealedBatch; segment?: string; offset?: number }
type NotLocated = { reason: string; segment?: string; offset?: number; absent?: boolean }

/** The stored batch of a sequence, decoded, and checked to be the one asked for. */
async function sealedAt(store: BatchStore, stream: string, sequence: number): Promise<Located | NotLocated> {
  const located: LocatedBatch = await store.batchAt(stream, sequence)
  if (!located.found) return { reason: located.reason, absent: located.absent, ...located.place }
  const where = located.place ? `segment ${located.place.segment} byte ${located.place.offset}` : 'the row'
  try {
    const sealed = decodeSealedBatch(located.bytes)
    const found = decodeBatch(sealed.batch).sequence
    if (found !== sequence) return { reason: `${where} holds sequence ${found} where ${sequence} belongs`, ...located.place }
    return { sealed, ...located.place }
  } catch (err) {
    if (err instanceof WireError) return { reason: `entry does not decode: ${err.message}`, ...located.place }
    throw err
  }
}
