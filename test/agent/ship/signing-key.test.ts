// The node's signing key file: made on the node when asked to, never overwritten, loaded with its id.
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { createSigningKeyIfMissing, SigningKeyFile } from '../../../agent/ship/signing-key.ts'
import { loadPublicKey, keyIdOf } from '../../../proto/keys.ts'

t.test('a node without a key makes its own: private 0600, public beside it, then loads it', async (t) => {
  const keyFile = join(t.testdir(), 'signing', 'ed25519.key.pem')
  const made = createSigningKeyIfMissing(keyFile)
  t.ok(made)
  t.equal(statSync(keyFile).mode & 0o777, 0o600)
  t.equal(keyIdOf(loadPublicKey(made!.publicKeyFile)), made!.keyId)
  t.match(made!.publicKeyPem, /^-----BEGIN PUBLIC KEY-----/)
  t.notMatch(made!.publicKeyPem, /PRIVATE/)
  const before = readFileSync(keyFile)
  t.equal(createSigningKeyIfMissing(keyFile), undefined, 'an existing key is kept')
  t.same(readFileSync(keyFile), before)
  const key = new SigningKeyFile(keyFile, { allowLoosePermissions: false })
  await key.reload()
  t.equal(key.current.keyId, made!.keyId)
})

t.test('a key path that cannot hold a public key beside it is refused with the rule', async (t) => {
  t.throws(() => createSigningKeyIfMissing(join(t.testdir(), 'key')), /must end in \.key\.pem/)
  const existing = join(t.testdir(), 'x.pem')
  writeFileSync(existing, 'whatever')
  t.equal(createSigningKeyIfMissing(existing), undefined, 'an existing file is never touched')
})
