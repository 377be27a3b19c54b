// The chain rules a stream's next batch is held to, against the stream as stored
// (a StreamView, under the stream's lock): shared by the collector's PushBatch and
// `collector copy`, so that a copied store is held to what a pushed one is.
import type { ConnectCode } from '../proto/connect.ts'
import type { Batch } from '../proto/wire.ts'
import type { StreamView } from './store/store.ts'

export interface ChainProblem {
  code: Extract<ConnectCode, 'already_exists' | 'out_of_range' | 'failed_precondition'>
  /** The batch field at fault, below the batch ('' for the batch as a whole). */
  field: '' | '.batch.prev_digest'
  reason: string
}

/**
 * 'stored' when the stream holds this very batch (same sequence, same digest: acknowledge it again),
 * 'new' when its sequence is past the head, a problem when the stream holds another batch there (a fork).
 */
export async function storedAlready(view: StreamView, streamId: string, batch: Batch, digest: Buffer): Promise<'stored' | 'new' | ChainProblem> {
  const headSequence = view.head?.sequence ?? 0
  if (batch.sequence > headSequence) return 'new'
  const stored = await view.digestAt(batch.sequence)
  if (stored?.equals(digest)) return 'stored'
  return { code: 'already_exists', field: '', reason: `fork: sequence ${batch.sequence} of stream ${streamId} already holds a different batch; the next sequence expected is ${headSequence + 1}` }
}

/** A new batch must be the head's successor and name the head's digest as its prev_digest. */
export function linkProblem(view: StreamView, streamId: string, batch: Batch): ChainProblem | undefined {
  const headSequence = view.head?.sequence ?? 0
  if (batch.sequence > headSequence + 1) {
    return { code: 'out_of_range', field: '', reason: `gap: stream ${streamId} expects sequence ${headSequence + 1}, got ${batch.sequence}` }
  }
  const expectedPrev = view.head?.digest ?? Buffer.alloc(0)
  // Buffer.from: proto/wire.ts hands an empty bytes field over as a plain [] (protobufjs default).
  if (!expectedPrev.equals(Buffer.from(batch.prevDigest))) {
    return { code: 'failed_precondition', field: '.batch.prev_digest', reason: `${hex(batch.prevDigest)} does not link to sequence ${headSequence} of stream ${streamId} (digest ${hex(expectedPrev)})` }
  }
  return undefined
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex') || '(empty)'
}
