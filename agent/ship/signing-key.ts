// The node's Ed25519 signing key, read from a PEM file (a mounted Secret).
// The file must not be readable by group or others; a replaced file is picked
// up at runtime so that key rotation needs no restart. The key itself never
// appears in a log, an error or a metric: only its id does.
import { createPublicKey, type KeyObject } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { KeyError, keyIdOf, parsePrivateKey } from '../../proto/keys.ts'
import { generateKeyPair } from '../keygen.ts'

/**
 * A node's own key, made on the node the first time it starts (PREFIX.key.pem 0600 beside
 * PREFIX.pub.pem): the private key never leaves the node; the public key is what the collector
 * is given to trust. Returns the public key (PEM) and its id when one was made, else undefined.
 */
export function createSigningKeyIfMissing(keyFile: string): { keyId: string; publicKeyFile: string; publicKeyPem: string } | undefined {
  if (existsSync(keyFile)) return undefined
  if (!keyFile.endsWith('.key.pem')) throw new KeyError(`signing.keyFile ${keyFile} must end in .key.pem for signing.createIfMissing (its public key goes beside it as .pub.pem)`)
  mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 })
  const made = generateKeyPair(keyFile.slice(0, -'.key.pem'.length))
  return { keyId: made.keyId, publicKeyFile: made.publicKeyFile, publicKeyPem: readFileSync(made.publicKeyFile, 'utf8') }
}

export interface SigningKey {
  privateKey: KeyObject
  publicKey: KeyObject
  keyId: string
}

export class SigningKeyFile {
  readonly path: string
  readonly #allowLoosePermissions: boolean
  #key: SigningKey | undefined
  #stamp = ''

  constructor(path: string, options: { allowLoosePermissions: boolean }) {
    this.path = path
    this.#allowLoosePermissions = options.allowLoosePermissions
  }

  get current(): SigningKey {
    if (!this.#key) throw new Error('signing key not loaded')
    return this.#key
  }

  /** Loads the key if the file changed; returns true when a new key id is in use. */
  async reload(): Promise<boolean> {
    let st
    try {
      st = await stat(this.path)
    } catch (err) {
      throw new KeyError(`cannot read signing key ${this.path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}; create one with 'auditrail keygen --out PREFIX' and point --key at PREFIX.key.pem`)
    }
    const stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`
    if (stamp === this.#stamp) return false
    if ((st.mode & 0o077) !== 0 && !this.#allowLoosePermissions) {
      throw new KeyError(
        `signing key ${this.path} is readable by group or others (mode ${(st.mode & 0o777).toString(8)}); run 'chmod 600 ${this.path}' (in Kubernetes: defaultMode: 0400 on the Secret volume), or pass --allow-loose-key-permissions`,
      )
    }
    const privateKey = parsePrivateKey(await readFile(this.path), this.path)
    const publicKey = createPublicKey(privateKey)
    const previous = this.#key?.keyId
    this.#key = { privateKey, publicKey, keyId: keyIdOf(publicKey) }
    this.#stamp = stamp
    return previous !== undefined && previous !== this.#key.keyId
  }
}
