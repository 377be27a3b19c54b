// `auditrail collector copy`: moves a whole store into another (a directory into
// PostgreSQL, or back), batch by batch, each held on the way to the rules a pushed
// batch is held to (seal, key binding, link), then verified end to end where it
// arrived. A copy that stopped half way is resumed by running it again: what the
// target already holds is recognised by digest and skipped.
import type { KeyObject } from 'node:crypto'
import { batchDigest, decodeBatch, decodeSealedBatch, WireError } from '../proto/wire.ts'
import { linkProblem, storedAlready } from './chain.ts'
import { checkKeyContinuity, checkSeal } from './seal.ts'
import { StoreError, type BatchStore, type StoredItem } from './store/store.ts'
import { verifyStore, type StreamSummary } from './verify.ts'

export interface CopySummary {
  /** Batches appended to the target. */
  copied: number
  /** Batches the target held already. */
  present: number
  /** What `verify` found in the target afterwards. */
  streams: StreamSummary[]
}

export async function copyStore(from: BatchStore, to: BatchStore, trustedKeys: ReadonlyMap<string, KeyObject>): Promise<CopySummary> {
  const streams = await from.streams()
  if (streams.length === 0) throw new StoreError(`${from.name} holds no streams (is it a collector store?)`)
  let copied = 0
  let present = 0
  for (const stream of streams) {
    for await (const item of from.entries(stream)) {
      if (item.kind === 'empty') continue
      const at = `${from.name}: stream ${stream}${item.place ? `, segment ${item.place.segment}, byte ${item.place.offset}` : ''}`
      if (item.kind === 'bad') throw new StoreError(`${at}: ${item.reason}; run 'auditrail verify' on it, nothing after this point was copied`)
      const outcome = await copyOne(item, stream, at, to, trustedKeys)
      if (outcome === 'appended') copied++
      else present++
    }
  }
  const verified = await verifyStore(to, trustedKeys)
  if (!verified.ok) {
    const p = verified.problem!
    throw new StoreError(`the copy in ${to.name} does not verify: stream ${p.stream}${p.sequence !== undefined ? `, sequence ${p.sequence}` : ''}: ${p.reason}`)
  }
  return { copied, present, streams: verified.streams }
}

async function copyOne(item: Extract<StoredItem, { kind: 'entry' }>, stream: string, at: string, to: BatchStore, trustedKeys: ReadonlyMap<string, KeyObject>): Promise<'appended' | 'stored'> {
  let sealed
  let batch
  try {
    sealed = decodeSealedBatch(item.bytes)
    batch = decodeBatch(sealed.batch)
  } catch (err) {
    if (err instanceof WireError) throw new StoreError(`${at}: the entry does not decode (${err.message}); run 'auditrail verify' on it`)
    throw err
  }
  const digest = batchDigest(sealed.batch)
  const where = `${at}, sequence ${batch.sequence}`
  const seal = checkSeal(sealed, digest, trustedKeys)
  if (seal) throw new StoreError(`${where}: ${seal.field} ${seal.reason}`)
  if (batch.streamId !== stream) throw new StoreError(`${where}: the batch belongs to stream ${JSON.stringify(batch.streamId)}`)
  return to.append(stream, { batch, sealed, digest }, async (view) => {
    const held = await storedAlready(view, stream, batch, digest)
    if (typeof held === 'object') throw new StoreError(`${where}: ${to.name} ${held.reason}`)
    if (held === 'stored') return 'stored'
    const key = checkKeyContinuity(batch, sealed, view.head?.keyId, trustedKeys)
    if (key) throw new StoreError(`${where}: ${key}`)
    const link = linkProblem(view, stream, batch)
    if (link) throw new StoreError(`${where}: ${link.reason}`)
    return 'append'
  })
}
