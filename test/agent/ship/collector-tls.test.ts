import { copyFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { CollectorTls, TlsFileError } from '../../../agent/ship/collector-tls.ts'
import { makeCa, makeLeaf } from './tls-certificates.ts'

t.test('reads the CA and the client pair, and notices a change', async (t) => {
  const dir = t.testdir()
  const ca = makeCa(dir, 'ca')
  const client = makeLeaf(dir, 'client', ca, 'clientAuth')
  const caFile = join(dir, 'mounted-ca.crt')
  const certFile = join(dir, 'mounted.crt')
  const keyFile = join(dir, 'mounted.key')
  copyFileSync(ca.certFile, caFile)
  copyFileSync(client.certFile, certFile)
  copyFileSync(client.keyFile, keyFile)
  const tls = new CollectorTls({ caFile, certFile, keyFile })
  t.same(tls.material, { ca: ca.cert, cert: client.cert, key: client.key })
  t.equal(tls.reload(), false, 'nothing changed')
  const renewed = makeLeaf(dir, 'client-2', ca, 'clientAuth')
  copyFileSync(renewed.certFile, certFile)
  copyFileSync(renewed.keyFile, keyFile)
  t.equal(tls.reload(), true)
  t.same(tls.material.cert, renewed.cert)
})

t.test('a half-written rotation or garbage is refused and the previous material stays; the key never shows', async (t) => {
  const dir = t.testdir()
  const ca = makeCa(dir, 'ca')
  const client = makeLeaf(dir, 'client', ca, 'clientAuth')
  const other = makeLeaf(dir, 'other', ca, 'clientAuth')
  const certFile = join(dir, 'mounted.crt')
  const keyFile = join(dir, 'mounted.key')
  copyFileSync(client.certFile, certFile)
  copyFileSync(client.keyFile, keyFile)
  const tls = new CollectorTls({ caFile: ca.certFile, certFile, keyFile })
  copyFileSync(other.certFile, certFile) // the certificate is new, the key not yet
  t.throws(() => tls.reload(), /mounted\.key \(collector\.keyFile\) does not belong to the certificate in .*mounted\.crt: both must come from the same Secret update/)
  t.same(tls.material.cert, client.cert, 'still the previous pair')
  writeFileSync(keyFile, 'not a key, but maybe a secret')
  const err = t.throws(() => tls.reload()) as Error
  t.ok(err instanceof TlsFileError)
  t.match(err.message, /mounted\.key \(collector\.keyFile\) is not a PEM private key/)
  t.notMatch(err.message, /maybe a secret/)
  t.throws(() => new CollectorTls({ caFile: join(dir, 'missing.crt'), certFile: '', keyFile: '' }), /cannot read the collector CA file \(collector\.caFile\) .*missing\.crt: ENOENT/)
  writeFileSync(join(dir, 'bad-ca.crt'), 'garbage')
  t.throws(() => new CollectorTls({ caFile: join(dir, 'bad-ca.crt'), certFile: '', keyFile: '' }), /bad-ca\.crt \(collector\.caFile\) is not a PEM certificate/)
  t.same(new CollectorTls({ caFile: '', certFile: '', keyFile: '' }).material, {}, 'no files: the system CAs, no client certificate')
})
