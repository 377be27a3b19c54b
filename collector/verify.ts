// The offline verifier: checks every stream of a store end to end, reading it
// (never writing it), one entry in memory at a time. It stops at the first bad
// place and names it: stream, segment file, byte offset, sequence, and why.
import type { KeyObject } from 'node:crypto'
import { batchDigest, decodeBatch, decodeSealedBatch, WireError, type Batch, type SealedBatch } from '../proto/wire.ts'
import { checkSeal } from './seal.ts'
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
      try {
        sealed = decodeSealedBatch(item.bytes)
        const problem = checkSeal(sealed, trustedKeys)
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
      prev = batchDigest(sealed.batch)
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
