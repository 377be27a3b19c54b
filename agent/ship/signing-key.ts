// The node's Ed25519 signing key, read from a PEM file (a mounted Secret).
// The file must not be readable by group or others; a replaced file is picked
// up at runtime so that key rotation needs no restart. The key itself never
// appears in a log, an error or a metric: only its id does.
import { createPublicKey, type KeyObject } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { KeyError, keyIdOf, parsePrivateKey } from '../../proto/keys.ts'

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
