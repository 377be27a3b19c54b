// Ed25519 keys as both sides of the contract see them: loading PEM files, the
// key id that a SealedBatch names, and the signature over a batch's bytes.
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'

export class KeyError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'KeyError'
  }
}

/** Hex SHA-256 of the raw 32-byte public key, first 16 bytes. */
export function keyIdOf(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: 'jwk' })
  if (jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') throw new KeyError('not an Ed25519 public key')
  return createHash('sha256').update(Buffer.from(jwk.x, 'base64url')).digest('hex').slice(0, 32)
}

/** Parses a PEM private key; the error never quotes the file's contents. */
export function parsePrivateKey(pem: string | Buffer, file: string): KeyObject {
  let key: KeyObject
  try {
    key = createPrivateKey(pem)
  } catch {
    throw new KeyError(`${file} is not a PEM private key; create one with 'auditrail keygen --out PREFIX'`)
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new KeyError(`${file} holds a ${key.asymmetricKeyType} key; Auditrail signs with Ed25519 keys ('auditrail keygen --out PREFIX')`)
  }
  return key
}

export function loadPublicKey(file: string): KeyObject {
  let pem: Buffer
  try {
    pem = readFileSync(file)
  } catch (err) {
    throw new KeyError(`cannot read public key ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  let key: KeyObject
  try {
    key = createPublicKey(pem)
  } catch {
    throw new KeyError(`${file} is not a PEM public key (expected the .pub.pem written by 'auditrail keygen')`)
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new KeyError(`${file} holds a ${key.asymmetricKeyType} key, not Ed25519`)
  return key
}

/**
 * Trusted keys by key id. Each path is a .pub.pem file or a directory of them (every `*.pub.pem`
 * inside, as a mounted Secret or ConfigMap holds one per node).
 */
export function loadTrustedKeys(paths: string[]): Map<string, KeyObject> {
  const keys = new Map<string, KeyObject>()
  for (const path of paths) {
    for (const file of publicKeyFiles(path)) {
      const key = loadPublicKey(file)
      keys.set(keyIdOf(key), key)
    }
  }
  return keys
}

function publicKeyFiles(path: string): string[] {
  let isDirectory: boolean
  try {
    isDirectory = statSync(path).isDirectory()
  } catch (err) {
    throw new KeyError(`cannot read public key ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  if (!isDirectory) return [path]
  // Names starting with '..' are a mounted volume's own bookkeeping (..data and its timestamped twin).
  const files = readdirSync(path).filter((n) => n.endsWith('.pub.pem') && !n.startsWith('..')).sort().map((n) => join(path, n))
  if (files.length === 0) throw new KeyError(`directory ${path} holds no *.pub.pem file; put each node's public key there (from 'auditrail keygen')`)
  return files
}

export function signBytes(bytes: Uint8Array, privateKey: KeyObject): Buffer {
  return sign(null, bytes, privateKey)
}

export function verifyBytes(bytes: Uint8Array, signature: Uint8Array, publicKey: KeyObject): boolean {
  if (signature.length !== 64) return false
  return verify(null, bytes, publicKey, signature)
}
