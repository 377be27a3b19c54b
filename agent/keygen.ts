// `auditrail keygen`: a fresh Ed25519 key pair for a node (private key 0600,
// never overwritten) and the public key the collector trusts.
import { generateKeyPairSync } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { keyIdOf } from '../proto/keys.ts'

export function generateKeyPair(prefix: string): { keyFile: string; publicKeyFile: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const keyFile = `${prefix}.key.pem`
  const publicKeyFile = `${prefix}.pub.pem`
  try {
    writeFileSync(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new Error(`${keyFile} exists; refusing to overwrite a signing key (choose another --out prefix)`)
    throw err
  }
  writeFileSync(publicKeyFile, publicKey.export({ format: 'pem', type: 'spki' }), { mode: 0o644, flag: 'wx' })
  return { keyFile, publicKeyFile, keyId: keyIdOf(publicKey) }
}
