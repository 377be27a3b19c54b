// The offline verifier: checks every stream of a store end to end, reading it
// (never writing it), one entry in memory at a time. It stops at the first bad
// place and names it: stream, segment file, byte offset, sequence, and why.
import type { KeyObject } from 'node:crypto'
import { batchDigest, decodeBatch, decodeSealedBatch, WireError, type Batch, type SealedBatch } from '../proto/wire.ts'
import { checkKeyContinuity, checkSeal } from './seal.ts'
import { listSegments, listStreams, readSegment, type SegmentFile } from './store.ts'

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

export async function verifyStore(dir: string, trustedKeys: ReadonlyMap<string, KeyObject>, options: { stream?: string } = {}): Promise<VerifyResult> {
  const all = await listStreams(dir)
  if (options.stream !== undefined && !all.includes(options.stream)) {
    return { ok: false, streams: [], problem: { stream: options.stream, reason: `no stream ${JSON.stringify(options.stream)} in ${dir} (streams: ${all.join(', ') || 'none'})` } }
  }
  const streams = options.stream !== undefined ? [options.stream] : all
  if (streams.length === 0) return { ok: false, streams: [], problem: { stream: '', reason: `${dir} holds no streams (is it a collector store?)` } }
  const summaries: StreamSummary[] = []
  for (const stream of streams) {
    const result = await verifyStream(dir, stream, trustedKeys)
    if ('reason' in result) return { ok: false, streams: summaries, problem: result }
    summaries.push(result)
  }
  return { ok: true, streams: summaries }
}

async function verifyStream(dir: string, stream: string, trustedKeys: ReadonlyMap<string, KeyObject>): Promise<StreamSummary | VerifyProblem> {
  const { segments, strays } = await listSegments(dir, stream)
  if (strays.length > 0) return { stream, segment: strays[0]!, reason: `unexpected file in the stream directory (segments are named <20-digit first sequence>.seg)` }
  if (segments.length === 0) return { stream, reason: 'the stream directory holds no segment files' }
  let expected = 1
  let prev: Buffer = Buffer.alloc(0)
  let boundKeyId: string | undefined
  let lines = 0
  for (const [index, segment] of segments.entries()) {
    const last = index === segments.length - 1
    let firstInSegment = true
    for await (const item of readSegment(segment.path)) {
      const at = { stream, segment: segment.name, offset: item.offset, sequence: expected }
      if (item.kind === 'bad') {
        const what = item.torn && last ? 'truncated' : item.torn ? 'truncated segment (more segments follow)' : 'altered bytes'
        return { ...at, reason: `${what}: ${item.reason}, where sequence ${expected} was expected` }
      }
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
      if (batch.sequence !== expected) return { ...found, reason: await sequenceProblem(segments, index, item.offset, expected, batch.sequence, firstInSegment) }
      if (firstInSegment && segment.first !== batch.sequence) return { ...found, reason: `segment name says it starts at sequence ${segment.first}, but it starts at ${batch.sequence}` }
      if (!prev.equals(Buffer.from(batch.prevDigest))) {
        return { ...found, reason: `broken link: prev_digest ${Buffer.from(batch.prevDigest).toString('hex') || '(empty)'} is not the digest of sequence ${expected - 1} (${prev.toString('hex') || '(empty)'})` }
      }
      const keyProblem = checkKeyContinuity(batch, sealed, boundKeyId, trustedKeys)
      if (keyProblem) return { ...found, reason: `key not bound to the stream: ${keyProblem}` }
      prev = digest
      boundKeyId = sealed.keyId
      lines += batch.records.reduce((n, r) => n + (r.line ? 1 : 0), 0)
      expected++
      firstInSegment = false
    }
    if (firstInSegment && (!last || segment.first !== expected)) {
      return { stream, segment: segment.name, offset: 0, sequence: expected, reason: `empty segment${last ? ` named for sequence ${segment.first}` : ' before the last one'}, where sequence ${expected} was expected` }
    }
  }
  return { stream, headSequence: expected - 1, lines, headDigest: prev.toString('hex') }
}

/** Tells a gap from a reordering by looking for the expected sequence further on (only on failure). */
async function sequenceProblem(segments: SegmentFile[], index: number, offset: number, expected: number, found: number, firstInSegment: boolean): Promise<string> {
  if (found < expected) return `reordering or duplicate: sequence ${found} appears again after ${expected - 1}`
  const later = await findSequence(segments, index, offset, expected)
  if (later) return `reordering: sequence ${found} is stored where ${expected} belongs; ${expected} is stored later (segment ${later.segment}, byte ${later.offset})`
  const range = found - 1 === expected ? `sequence ${expected} is` : `sequences ${expected} to ${found - 1} are`
  return `gap: ${range} missing${firstInSegment && index > 0 ? ` (a segment file before ${segments[index]!.name} was deleted?)` : ''}`
}

async function findSequence(segments: SegmentFile[], index: number, after: number, wanted: number): Promise<{ segment: string; offset: number } | undefined> {
  for (const segment of segments.slice(index)) {
    for await (const item of readSegment(segment.path)) {
      if (segment === segments[index] && item.offset <= after) continue
      if (item.kind === 'bad') return undefined
      try {
        if (decodeBatch(decodeSealedBatch(item.bytes).batch).sequence === wanted) return { segment: segment.name, offset: item.offset }
      } catch {
        return undefined
      }
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
export async function verifyEvent(dir: string, trustedKeys: ReadonlyMap<string, KeyObject>, at: EventCoordinates): Promise<EventProof> {
  const { stream, sequence, recordIndex } = at
  const checks: string[] = []
  const fail = (reason: string, where: Partial<VerifyProblem> = {}): EventProof => ({ ok: false, checks, problem: { stream, sequence, reason, ...where } })
  const streams = await listStreams(dir)
  if (!streams.includes(stream)) return fail(`no stream ${JSON.stringify(stream)} in ${dir} (streams: ${streams.join(', ') || 'none'})`)
  const { segments } = await listSegments(dir, stream)

  const target = await sealedAt(segments, sequence)
  if ('reason' in target) return fail(target.reason, target)
  const digest = batchDigest(target.sealed.batch)
  const sealProblem = checkSeal(target.sealed, digest, trustedKeys)
  if (sealProblem) return fail(`bad seal on sequence ${sequence}: ${sealProblem.field} ${sealProblem.reason}`, target)
  const batch = decodeBatch(target.sealed.batch)
  if (batch.streamId !== stream) return fail(`batch belongs to stream ${JSON.stringify(batch.streamId)}, stored under ${JSON.stringify(stream)}`, target)
  checks.push(`sequence ${sequence}: checksum and ${target.sealed.algorithm} signature by key ${target.sealed.keyId} hold (segment ${target.segment}, byte ${target.offset})`)
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
    const prev = await sealedAt(segments, sequence - 1)
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
  const next = await sealedAt(segments, sequence + 1)
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

type Located = { sealed: SealedBatch; segment: string; offset: number }
type NotLocated = { reason: string; segment?: string; offset?: number; absent?: boolean }

/** The stored batch of a sequence: sequences are consecutive, so the segment is the last one starting at or before it. */
async function sealedAt(segments: SegmentFile[], sequence: number): Promise<Located | NotLocated> {
  const segment = segments.findLast((s) => s.first <= sequence)
  if (!segment) return { reason: `sequence ${sequence} is not stored`, absent: true }
  let n = segment.first
  for await (const item of readSegment(segment.path)) {
    if (item.kind === 'bad') return { reason: `altered or truncated entry where sequence ${n} was expected: ${item.reason}`, segment: segment.name, offset: item.offset, absent: false }
    if (n === sequence) {
      let sealed: SealedBatch
      try {
        sealed = decodeSealedBatch(item.bytes)
        const found = decodeBatch(sealed.batch).sequence
        if (found !== sequence) return { reason: `segment ${segment.name} byte ${item.offset} holds sequence ${found} where ${sequence} belongs`, segment: segment.name, offset: item.offset }
      } catch (err) {
        if (err instanceof WireError) return { reason: `entry does not decode: ${err.message}`, segment: segment.name, offset: item.offset }
        throw err
      }
      return { sealed, segment: segment.name, offset: item.offset }
    }
    n++
  }
  return { reason: `sequence ${sequence} is not stored (segment ${segment.name} ends at ${n - 1})`, absent: true }
}
