// Certificates for TLS tests, made with the openssl CLI: a CA, and leaf certificates it signs.
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface Pem {
  certFile: string
  keyFile: string
  cert: Buffer
  key: Buffer
}

const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] })

export function makeCa(dir: string, name: string): Pem {
  const certFile = join(dir, `${name}.crt`)
  const keyFile = join(dir, `${name}.key`)
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${name}`])
  return { certFile, keyFile, cert: readFileSync(certFile), key: readFileSync(keyFile) }
}

/** A leaf for 127.0.0.1 (server) or a client, signed by `ca`; its subject CN is `cn` (default: the file name). */
export function makeLeaf(dir: string, name: string, ca: Pem, usage: 'serverAuth' | 'clientAuth', cn = name): Pem {
  const certFile = join(dir, `${name}.crt`)
  const keyFile = join(dir, `${name}.key`)
  const csr = join(dir, `${name}.csr`)
  const ext = join(dir, `${name}.ext`)
  writeFileSync(ext, `subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=${usage}\n`)
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', csr, '-subj', `/CN=${cn}`])
  openssl(['x509', '-req', '-in', csr, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-CAcreateserial', '-out', certFile, '-days', '2', '-extfile', ext])
  return { certFile, keyFile, cert: readFileSync(certFile), key: readFileSync(keyFile) }
}
