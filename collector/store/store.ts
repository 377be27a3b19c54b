// The one interface the collector, the verifier and the exporter use to store and
// read sealed batches. Two implementations: a local directory of segment files
// (file-store.ts, the embedded default) and PostgreSQL (postgres-store.ts, for
// several collectors on one database). open.ts picks one from `--store`.
//
// Writing goes through `append` only: the store runs the caller's chain check
// under the stream's lock (in-process for a directory, a transaction-scoped
// advisory lock in PostgreSQL) against the head as stored at that moment, and
// stores the batch in the same critical section. Whoever writes, a stream can
// neither fork nor hold a batch twice.
import type { Batch, SealedBatch } from '../../proto/wire.ts'

export const STREAM_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/

export function isValidStreamId(id: string): boolean {
  return STREAM_ID_PATTERN.test(id)
}

export class StoreError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'StoreError'
  }
}

/**
 * The store cannot be reached or could not commit (database down, connection lost,
 * a timeout): nothing was stored by the call that failed, and a retry may succeed.
 */
export class StoreUnavailableError extends StoreError {
  constructor(message: string) {
    super(message)
    this.name = 'StoreUnavailableError'
  }
}

export interface StoreHead {
  sequence: number
  /** SHA-256 of the head batch's bytes: what the next batch's prev_digest must be. */
  digest: Buffer
  /** The head's SealedBatch bytes, as stored. */
  sealed: Buffer
  /** The key that signed the head: the key the stream is bound to now. */
  keyId: string
}

/** A batch that passed the seal check, on its way into the store. */
export interface NewEntry {
  batch: Batch
  sealed: SealedBatch
  /** batchDigest(sealed.batch) */
  digest: Buffer
}

/** What the chain check sees: the stream as stored, under the stream's lock. */
export interface StreamView {
  readonly head: StoreHead | undefined
  /** The digest of the stored batch with this sequence, or undefined when the stream does not hold it. */
  digestAt(sequence: number): Promise<Buffer | undefined>
  /** How many streams the key is bound to now (their heads are signed by it). */
  streamsOfKey(keyId: string): Promise<number>
}

/**
 * The chain check: 'append' stores the entry as the stream's next batch, 'stored'
 * means the stream already holds it (nothing is written); anything it throws
 * leaves the store as it was and reaches the caller of `append` unchanged.
 */
export type ChainCheck = (view: StreamView) => Promise<'append' | 'stored'>

/** Where a stored batch sits in a file store (PostgreSQL rows have no such place). */
export interface EntryPlace {
  /** Segment file name. */
  segment: string
  offset: number
}

/**
 * One stored batch as read back, in stream order. `bytes` is the SealedBatch as stored.
 * `segmentFirst` is set on the first entry of a segment file: the sequence its name claims.
 */
export type StoredItem =
  | { kind: 'entry'; bytes: Buffer; place?: EntryPlace; segmentFirst?: number }
  /** Bytes that are not a whole entry (file store). `torn`: cut the way an interrupted append leaves it; `inLastSegment`: in the stream's last file. */
  | { kind: 'bad'; reason: string; torn: boolean; inLastSegment: boolean; place: EntryPlace }
  /** A segment file without entries (file store); `last`: the stream's last file; `first`: the sequence its name claims. */
  | { kind: 'empty'; segment: string; first: number; last: boolean }

/** A batch found by sequence, or why it is not there (`absent`: the stream simply does not hold it). */
export type LocatedBatch =
  | { found: true; bytes: Buffer; place?: EntryPlace }
  | { found: false; reason: string; absent: boolean; place?: EntryPlace }

export interface BatchStore {
  readonly kind: 'file' | 'postgres'
  /** For logs and messages: the directory, or the URL without any password. */
  readonly name: string
  streams(): Promise<string[]>
  head(streamId: string): Promise<StoreHead | undefined>
  /**
   * Runs `check` with the stream as stored, under the stream's lock, and appends the
   * entry when it says so; returns once the batch is durable (fsynced, or committed).
   * Fails with StoreUnavailableError when the store could not take it.
   */
  append(streamId: string, entry: NewEntry, check: ChainCheck): Promise<'appended' | 'stored'>
  /**
   * Seconds since each stream's last stored batch (heartbeats are batches), one number per stream and in
   * no order: the collector's metrics count silent streams from these without naming any.
   */
  lastBatchAges(): Promise<number[]>
  /** Undefined when the store takes writes now, else why not (for /readyz). */
  unready(): Promise<string | undefined>
  close(): Promise<void>

  // The read side (verify, export): never writes, safe on a live store.
  /** A problem with the stream's container itself (a stray file), found before its entries are read. */
  layoutProblem(streamId: string): Promise<{ segment?: string; reason: string } | undefined>
  /** Every stored batch of a stream in stored order, one in memory at a time. */
  entries(streamId: string): AsyncGenerator<StoredItem>
  batchAt(streamId: string, sequence: number): Promise<LocatedBatch>
}
