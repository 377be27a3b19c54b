// A file is the same file when device and inode match and its first bytes hash
// to the fingerprint we saw. The fingerprint alone recognises a rotated backup
// after the apiserver gzipped it (new inode, same content).
import { createHash } from 'node:crypto'
import type { FileHandle } from 'node:fs/promises'

/** How many leading bytes the fingerprint covers: an audit line's auditID falls well inside. */
export const FINGERPRINT_BYTES = 256

export interface FileIdentity {
  device: number
  inode: number
  /** SHA-256 of the first `fingerprintLength` bytes. */
  fingerprint: Buffer
  fingerprintLength: number
}

export function fingerprintOf(firstBytes: Uint8Array): { fingerprint: Buffer; fingerprintLength: number } {
  const head = firstBytes.subarray(0, FINGERPRINT_BYTES)
  return { fingerprint: createHash('sha256').update(head).digest(), fingerprintLength: head.length }
}

export async function readHead(handle: FileHandle): Promise<Buffer> {
  const buf = Buffer.alloc(FINGERPRINT_BYTES)
  const { bytesRead } = await handle.read(buf, 0, FINGERPRINT_BYTES, 0)
  return buf.subarray(0, bytesRead)
}

/** True when `head` (the candidate's first bytes) begins with what `known` fingerprinted. */
export function headMatches(known: Pick<FileIdentity, 'fingerprint' | 'fingerprintLength'>, head: Uint8Array): boolean {
  if (head.length < known.fingerprintLength) return false
  const digest = createHash('sha256').update(head.subarray(0, known.fingerprintLength)).digest()
  return digest.equals(known.fingerprint)
}

export function inodeKey(device: number, inode: number): string {
  return `${device}:${inode}`
}
