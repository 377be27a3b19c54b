// The one check of a SealedBatch's seal, shared by the collector and the offline
// verifier: algorithm, trusted key, and the signature over the digest of the
// bytes as stored, before anything decodes them.
import type { KeyObject } from 'node:crypto'
import type { ConnectCode } from '../proto/connect.ts'
import { SEAL_ALGORITHM, V1_SEAL_ALGORITHM, verifyRotation, verifySeal } from '../proto/signed-messages.ts'
import type { Batch, SealedBatch } from '../proto/wire.ts'

export interface SealProblem {
  code: Extract<ConnectCode, 'invalid_argument' | 'unauthenticated' | 'permission_denied'>
  field: 'algorithm' | 'key_id' | 'signature'
  reason: string
}

/** undefined when the seal holds; `digest` is the batch's SHA-256 (batchDigest), which the chain needs anyway. */
export function checkSeal(sealed: SealedBatch, digest: Uint8Array, trustedKeys: ReadonlyMap<string, KeyObject>): SealProblem | undefined {
  if (sealed.algorithm !== SEAL_ALGORITHM) {
    const reason = sealed.algorithm === V1_SEAL_ALGORITHM
      ? `"${V1_SEAL_ALGORITHM}" is the version 1 seal (Ed25519 over the whole batch bytes); this collector checks version 2 seals ("${SEAL_ALGORITHM}": Ed25519 over a context line and the batch's SHA-256): upgrade the agent`
      : `${JSON.stringify(sealed.algorithm.slice(0, 64))} is not supported; use ${SEAL_ALGORITHM}`
    return { code: 'invalid_argument', field: 'algorithm', reason }
  }
  const key = trustedKeys.get(sealed.keyId)
  if (!key) {
    return { code: 'unauthenticated', field: 'key_id', reason: `${JSON.stringify(sealed.keyId.slice(0, 64))} is not a trusted key; add the node's public key (.pub.pem) with --trust` }
  }
  if (!verifySeal(digest, sealed.signature, key)) {
    return { code: 'permission_denied', field: 'signature', reason: `does not verify with key ${sealed.keyId}: the batch bytes were altered or signed with another key` }
  }
  return undefined
}

/**
 * A stream belongs to the key of its first batch. A batch signed by another key
 * continues it only when it carries that key's endorsement (a KeyRotation).
 * `boundKeyId` is the key of the stream's previous batch (undefined for sequence 1).
 * undefined when the batch may continue the stream.
 */
export function checkKeyContinuity(batch: Batch, sealed: SealedBatch, boundKeyId: string | undefined, trustedKeys: ReadonlyMap<string, KeyObject>): string | undefined {
  const rotation = batch.keyRotation
  if (boundKeyId === undefined || boundKeyId === sealed.keyId) {
    return rotation ? `batch.key_rotation: set, but the key does not change (${sealed.keyId}); only the first batch under a new key carries one` : undefined
  }
  if (!rotation) {
    return `stream ${batch.streamId} belongs to key ${boundKeyId}, and this batch is signed by ${sealed.keyId} without a key rotation endorsed by ${boundKeyId}; each node signs its own stream with its own key`
  }
  if (rotation.previousKeyId !== boundKeyId) {
    return `batch.key_rotation.previous_key_id: ${JSON.stringify(rotation.previousKeyId.slice(0, 64))} is not the stream's key ${boundKeyId}`
  }
  const previous = trustedKeys.get(boundKeyId)
  if (!previous) return `batch.key_rotation: the stream's key ${boundKeyId} is no longer trusted, so its endorsement of ${sealed.keyId} cannot be checked; keep the old key in --trust until the rotation is stored`
  if (!verifyRotation(batch.streamId, sealed.keyId, batch.sequence, rotation.endorsement, previous)) {
    return `batch.key_rotation.endorsement: does not verify with the stream's key ${boundKeyId} for key ${sealed.keyId} at sequence ${batch.sequence}`
  }
  return undefined
}
