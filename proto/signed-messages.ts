// What each Ed25519 signature of the wire contract covers (see the .proto's
// header). Every message starts with its own context line, so that a signature
// made for one purpose (sealing a batch) can never pass for another (proving
// a stream's key to read its head, endorsing a new key).
import type { KeyObject } from 'node:crypto'
import { signBytes, verifyBytes } from './keys.ts'

/** SealedBatch.algorithm of this contract version. */
export const SEAL_ALGORITHM = 'ed25519-sha256-v2'
/** Version 1's algorithm: Ed25519 over the whole batch bytes. Named only to refuse it clearly. */
export const V1_SEAL_ALGORITHM = 'ed25519'

const SEAL_CONTEXT = Buffer.from('auditrail.v2 batch seal\n')
const ROTATION_CONTEXT = 'auditrail.v2 key rotation\n'
const STREAM_HEAD_CONTEXT = 'auditrail.v2 stream head\n'

/** A fixed 56 bytes whatever the batch's size: the context, then the batch's SHA-256 (its chain digest). */
function sealMessage(batchDigest: Uint8Array): Buffer {
  return Buffer.concat([SEAL_CONTEXT, batchDigest])
}

export function signSeal(batchDigest: Uint8Array, privateKey: KeyObject): Buffer {
  return signBytes(sealMessage(batchDigest), privateKey)
}

export function verifySeal(batchDigest: Uint8Array, signature: Uint8Array, publicKey: KeyObject): boolean {
  return verifyBytes(sealMessage(batchDigest), signature, publicKey)
}

function rotationMessage(streamId: string, newKeyId: string, sequence: number): Buffer {
  return Buffer.from(`${ROTATION_CONTEXT}${streamId}\n${newKeyId}\n${sequence}`)
}

export function signRotation(streamId: string, newKeyId: string, sequence: number, previousKey: KeyObject): Buffer {
  return signBytes(rotationMessage(streamId, newKeyId, sequence), previousKey)
}

export function verifyRotation(streamId: string, newKeyId: string, sequence: number, endorsement: Uint8Array, previousKey: KeyObject): boolean {
  return verifyBytes(rotationMessage(streamId, newKeyId, sequence), endorsement, previousKey)
}

function streamHeadMessage(streamId: string, issuedUnixMs: number): Buffer {
  return Buffer.from(`${STREAM_HEAD_CONTEXT}${streamId}\n${issuedUnixMs}`)
}

export function signStreamHeadRequest(streamId: string, issuedUnixMs: number, privateKey: KeyObject): Buffer {
  return signBytes(streamHeadMessage(streamId, issuedUnixMs), privateKey)
}

export function verifyStreamHeadRequest(streamId: string, issuedUnixMs: number, signature: Uint8Array, publicKey: KeyObject): boolean {
  return verifyBytes(streamHeadMessage(streamId, issuedUnixMs), signature, publicKey)
}
