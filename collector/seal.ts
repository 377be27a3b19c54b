// The one check of a SealedBatch's seal, shared by the collector and the offline
// verifier: algorithm, trusted key, and the signature over the bytes as stored,
// before anything decodes them.
import type { KeyObject } from 'node:crypto'
import type { ConnectCode } from '../proto/connect.ts'
import { verifyBytes } from '../proto/keys.ts'
import { SIGNATURE_ALGORITHM, type SealedBatch } from '../proto/wire.ts'

export interface SealProblem {
  code: Extract<ConnectCode, 'invalid_argument' | 'unauthenticated' | 'permission_denied'>
  field: 'algorithm' | 'key_id' | 'signature'
  reason: string
}

/** undefined when the seal holds. */
export function checkSeal(sealed: SealedBatch, trustedKeys: ReadonlyMap<string, KeyObject>): SealProblem | undefined {
  if (sealed.algorithm !== SIGNATURE_ALGORITHM) {
    return { code: 'invalid_argument', field: 'algorithm', reason: `${JSON.stringify(sealed.algorithm.slice(0, 64))} is not supported; use ${SIGNATURE_ALGORITHM}` }
  }
  const key = trustedKeys.get(sealed.keyId)
  if (!key) {
    return { code: 'unauthenticated', field: 'key_id', reason: `${JSON.stringify(sealed.keyId.slice(0, 64))} is not a trusted key; add the node's public key (.pub.pem) with --trust` }
  }
  if (!verifyBytes(sealed.batch, sealed.signature, key)) {
    return { code: 'permission_denied', field: 'signature', reason: `does not verify with key ${sealed.keyId}: the batch bytes were altered or signed with another key` }
  }
  return undefined
}
