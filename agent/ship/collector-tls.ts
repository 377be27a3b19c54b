// The agent's TLS material for the collector: the CA that signs the collector's
// certificate and, for mTLS, the agent's client certificate and key. Secrets
// rotate (cert-manager renews before expiry), so the files are re-read and a
// change builds a new connection pool; material that does not parse, or a key
// that does not match its certificate (a rotation caught half-written), is
// refused and the previous material stays in use.
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'

export interface TlsFiles {
  caFile: string
  certFile: string
  keyFile: string
}

export interface TlsMaterial {
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
}

export class TlsFileError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'TlsFileError'
  }
}

export class CollectorTls {
  readonly #files: TlsFiles
  #material: TlsMaterial = {}
  #digest = ''

  /** Reads and checks the files; throws TlsFileError naming the file and what is wrong. */
  constructor(files: TlsFiles) {
    this.#files = files
    this.reload()
  }

  get material(): TlsMaterial {
    return this.#material
  }

  /** Re-reads the files: true when they changed and the new material is good; throws TlsFileError (keeping the old) when it is not. */
  reload(): boolean {
    const { caFile, certFile, keyFile } = this.#files
    const read = (file: string, what: string): Buffer | undefined => {
      if (!file) return undefined
      try {
        return readFileSync(file)
      } catch (err) {
        throw new TlsFileError(`cannot read the ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
      }
    }
    const material: TlsMaterial = {}
    const ca = read(caFile, 'collector CA file (collector.caFile)')
    const cert = read(certFile, 'client certificate (collector.certFile)')
    const key = read(keyFile, 'client key (collector.keyFile)')
    const digest = createHash('sha256').update(ca ?? '').update('\0').update(cert ?? '').update('\0').update(key ?? '').digest('hex')
    if (digest === this.#digest) return false
    if (ca) material.ca = checkCertificate(ca, caFile, 'collector.caFile')
    if (cert && key) {
      const x509 = new X509Certificate(checkCertificate(cert, certFile, 'collector.certFile'))
      let privateKey
      try {
        privateKey = createPrivateKey(key)
      } catch {
        // The key's contents never go into an error or a log.
        throw new TlsFileError(`${keyFile} (collector.keyFile) is not a PEM private key`)
      }
      if (!x509.checkPrivateKey(privateKey)) throw new TlsFileError(`${keyFile} (collector.keyFile) does not belong to the certificate in ${certFile}: both must come from the same Secret update`)
      material.cert = cert
      material.key = key
    }
    this.#material = material
    this.#digest = digest
    return true
  }
}

function checkCertificate(pem: Buffer, file: string, key: string): Buffer {
  try {
    new X509Certificate(pem)
  } catch {
    throw new TlsFileError(`${file} (${key}) is not a PEM certificate`)
  }
  return pem
}
