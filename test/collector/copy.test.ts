// `auditrail collector copy`: a directory into PostgreSQL and back, byte for byte, verified on arrival;
// resumable; a damaged or forged source, or a target that holds another chain, stops it and says where.
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { copyStore } from '../../collector/copy.ts'
import { exportStream } from '../../collector/export.ts'
import { openStore, reading } from '../../collector/store/open.ts'
import { signRotation } from '../../proto/signed-messages.ts'
import { Chain, testKey, trustOf } from './fixtures.ts'
import { freshStore, storeHolding } from './stores.ts'

const main = fileURLToPath(new URL('../../programs/main.ts', import.meta.url))
const key = testKey()
const next = testKey()
const trusted = trustOf(key, next)

/** Two streams, one of them with an endorsed key rotation half way. */
function chains() {
  const a = new Chain('node-a', key)
  a.grow(5)
  a.key = next
  a.next(['{"after":"rotation"}'], { keyRotation: { previousKeyId: key.keyId, endorsement: signRotation('node-a', next.keyId, 6, key.privateKey) } })
  a.grow(3)
  const b = new Chain('node-b', key)
  b.grow(4)
  return { 'node-a': a.sealed, 'node-b': b.sealed }
}

async function exported(spec: string, stream: string): Promise<Buffer> {
  const out = new PassThrough()
  const chunks: Buffer[] = []
  out.on('data', (c: Buffer) => chunks.push(c))
  await exportStream(spec, { stream, records: true, out })
  return Buffer.concat(chunks)
}

function auditrail(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [main, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d))
  child.stderr.on('data', (d: Buffer) => (stderr += d))
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })))
}

t.test('a directory into PostgreSQL and back: the same export, verified on arrival; a second run copies nothing', async (t) => {
  const dir = await storeHolding(t, 'file', chains(), 2000)
  const url = await freshStore(t, 'postgres')
  const scratch = t.testdir()
  const pubs = [key, next].map((k, i) => {
    const file = join(scratch, `k${i}.pub.pem`)
    writeFileSync(file, k.publicKey.export({ type: 'spki', format: 'pem' }))
    return file
  })
  const trust = pubs.flatMap((p) => ['--trust', p])
  const first = await auditrail(['collector', 'copy', '--from', dir, '--to', url, ...trust])
  t.equal(first.code, 0, first.stderr)
  t.match(first.stdout, /ok {3}stream node-a: sequences 1\.\.9[\s\S]*ok {3}stream node-b: sequences 1\.\.4[\s\S]*copied 13 batches .* \(0 were there already\); the copy verifies/)
  const again = await auditrail(['collector', 'copy', '--from', dir, '--to', url, ...trust])
  t.equal(again.code, 0, again.stderr)
  t.match(again.stdout, /copied 0 batches .* \(13 were there already\)/)
  for (const stream of ['node-a', 'node-b']) t.same(await exported(url, stream), await exported(dir, stream), `${stream}: the same export from PostgreSQL`)

  const back = join(scratch, 'back')
  const store = await openStore(back)
  const summary = await reading(url, (source) => copyStore(source, store, trusted)).finally(() => store.close())
  t.equal(summary.copied, 13)
  for (const stream of ['node-a', 'node-b']) t.same(await exported(back, stream), await exported(dir, stream), `${stream}: the same export back in a directory`)
})

t.test('a forged batch in the source stops the copy there, named; what came before it is copied', async (t) => {
  const a = new Chain('node-a', key)
  const sealed = a.grow(3)
  a.key = next // another trusted key, without the stream key's endorsement
  sealed.push(...a.grow(2))
  const dir = await storeHolding(t, 'file', { 'node-a': sealed })
  const url = await freshStore(t, 'postgres')
  const target = await openStore(url)
  t.teardown(() => target.close())
  await t.rejects(reading(dir, (source) => copyStore(source, target, trusted)), /stream node-a, segment \S+, byte \d+, sequence 4: stream node-a belongs to key/)
  t.equal((await target.head('node-a'))?.sequence, 3)
})

t.test('a target holding another chain for the stream is a fork: refused', async (t) => {
  const dir = await storeHolding(t, 'file', { 'node-a': new Chain('node-a', key).grow(3) })
  const other = new Chain('node-a', key)
  other.next(['{"other":true}'])
  const url = await storeHolding(t, 'postgres', { 'node-a': other.sealed })
  const target = await openStore(url)
  t.teardown(() => target.close())
  await t.rejects(reading(dir, (source) => copyStore(source, target, trusted)), /sequence 1: .* fork: sequence 1 of stream node-a already holds a different batch/)
})
