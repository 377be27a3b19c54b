// Seals a batch: sequence number, link to the previous batch's digest, and an
// Ed25519 signature over the digest of the exact bytes that will be shipped and
// stored. When the signing key changes, the first batch under the new key
// carries the old key's endorsement of it (the stream's key rotation).
import { batchDigest, encodeBatchWithBody, type BatchBody, type KeyRotation, type SealedBatch } from '../../proto/wire.ts'
import { SEAL_ALGORITHM, signRotation, signSeal } from '../../proto/signed-messages.ts'
import type { FileIdentity } from '../tail/file-identity.ts'
import type { TailPosition } from '../tail/tailer.ts'
import type { SigningKey } from './signing-key.ts'

/** A batch as the batcher closes it, before it is sealed. */
export interface BatchDraft {
  path: string
  identity: FileIdentity
  order: TailPosition['order']
  startOffset: number
  endOffset: number
  endOfFile: boolean
  /** The records and their findings, encoded as they were added. */
  body: BatchBody
  /** Sum of line bytes: what the batch costs in memory. */
  lineBytes: number
  /** Newest event time (stageTimestamp) seen in the batch, Unix ms; 0 when none. */
  newestEventMs: number
  /** performance.now() when the batch got its first record (or was made, for an empty one). */
  openedAt: number
  /** A heartbeat sent before any log file exists: it moves the chain, not the file position. */
  noFile?: true
}

export interface SealedItem {
  sequence: number
  digest: Buffer
  /** Its batch bytes may be in the sealer's reused storage: read them only until the batch is acknowledged. */
  sealed: SealedBatch
  /** About the encoded SealedBatch size: what it costs to hold until acknowledged. */
  size: number
  /** Where the checkpoint moves once this batch is acknowledged; undefined when it does not move. */
  position: TailPosition | undefined
  recordCount: number
  newestEventMs: number
  openedAt: number
}

export interface ChainHead {
  nextSequence: number
  headDigest: Buffer
}

export class Sealer {
  readonly #streamId: string
  readonly #node: string
  #next: number
  #prev: Buffer
  /** The key the stream is bound to: the one that signed the last sealed batch (or the collector's head). */
  #chainKey: SigningKey | undefined
  readonly #alloc: ((size: number) => Buffer) | undefined

  /** `alloc` gives the buffer a batch's bytes are written to (the agent's BatchRing); a new one each by default. */
  constructor(streamId: string, node: string, head: ChainHead, chainKey: SigningKey | undefined, alloc?: (size: number) => Buffer) {
    this.#streamId = streamId
    this.#node = node
    this.#next = head.nextSequence
    this.#prev = head.headDigest
    this.#chainKey = chainKey
    this.#alloc = alloc
  }

  get head(): ChainHead {
    return { nextSequence: this.#next, headDigest: this.#prev }
  }

  seal(draft: BatchDraft, key: SigningKey, nowMs: number): SealedItem {
    const sequence = this.#next
    const previous = this.#chainKey
    const keyRotation: KeyRotation | undefined = previous && previous.keyId !== key.keyId
      ? { previousKeyId: previous.keyId, endorsement: signRotation(this.#streamId, key.keyId, sequence, previous.privateKey) }
      : undefined
    const bytes = encodeBatchWithBody({
      streamId: this.#streamId,
      sequence,
      prevDigest: this.#prev,
      createdUnixMs: nowMs,
      node: this.#node,
      source: {
        path: draft.path,
        device: draft.identity.device,
        inode: draft.identity.inode,
        fingerprint: draft.identity.fingerprint,
        fingerprintLength: draft.identity.fingerprintLength,
        startOffset: draft.startOffset,
        endOffset: draft.endOffset,
        endOfFile: draft.endOfFile,
        rotatedUnixMs: draft.order.rotatedAt ?? 0,
        liveAfterUnixMs: draft.order.liveAfter,
      },
      ...(keyRotation ? { keyRotation } : {}),
    }, draft.body, this.#alloc)
    const digest = batchDigest(bytes)
    const sealed: SealedBatch = { batch: bytes, signature: signSeal(digest, key.privateKey), keyId: key.keyId, algorithm: SEAL_ALGORITHM }
    this.#next = sequence + 1
    this.#prev = digest
    this.#chainKey = key
    return {
      sequence,
      digest,
      sealed,
      size: bytes.length + sealed.signature.length + sealed.keyId.length + 16,
      position: draft.noFile ? undefined : { path: draft.path, identity: draft.identity, order: { ...draft.order }, offset: draft.endOffset, endOfFile: draft.endOfFile },
      recordCount: draft.body.recordCount,
      newestEventMs: draft.newestEventMs,
      openedAt: draft.openedAt,
    }
  }
}
