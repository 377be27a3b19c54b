// The collector, verify and export commands as a user runs them: `auditrail` in a child process.
import { spawn } from 'node:child_process'
import { appendFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { decodePushBatchResponse, encodePushBatchRequest, PUSH_BATCH_PATH } from '../../proto/wire.ts'
import { Chain, post, testKey } from './fixtures.ts'
import { freshStore, STORE_KINDS } from './stores.ts'

const main = fileURLToPath(new URL('../../programs/main.ts', import.meta.url))
const key = testKey()

function auditrail(args: string[]) {
  const child = spawn(process.execPath, [main, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d))
  child.stderr.on('data', (d: Buffer) => (stderr += d))
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
  return { child, done, stderr: () => stderr }
}

async function waitFor<T>(what: string, probe: () => T | undefined): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const v = probe()
    if (v !== undefined) return v
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`timed out waiting for ${what}`)
}

for (const kind of STORE_KINDS) {
  t.test(`${kind} store: collector serves until SIGTERM; verify and export read what it stored`, async (t) => {
    const dir = t.testdir()
    const store = kind === 'file' ? join(dir, 'store') : await freshStore(t, kind)
    const pub = join(dir, 'node-a.pub.pem')
    writeFileSync(pub, key.publicKey.export({ type: 'spki', format: 'pem' }))

    const collector = auditrail(['collector', '--listen', '127.0.0.1:0', '--store', store, '--trust', pub])
    const url = await waitFor('the collector to listen', () => /"url":"(http:\/\/[^"]+)"/.exec(collector.stderr())?.[1])
    const chain = new Chain('node-a', key)
    const res = await post(url, PUSH_BATCH_PATH, encodePushBatchRequest(chain.grow(3, 2)))
    t.equal(decodePushBatchResponse(res.body).acknowledgedSequence, 3)
    collector.child.kill('SIGTERM')
    const stopped = await collector.done
    t.equal(stopped.code, 0, stopped.stderr)
    t.match(stopped.stderr, /collector closed/)

    const verified = await auditrail(['verify', store, '--trust', pub]).done
    t.equal(verified.code, 0, verified.stderr)
    t.match(verified.stdout, /ok {3}stream node-a: sequences 1\.\.3, 6 lines/)

    const exported = await auditrail(['export', store]).done
    t.equal(exported.code, 0, exported.stderr)
    t.equal(exported.stdout.split('\n').length, 7)

    if (kind !== 'file') return
    // damage: verify fails, names the place, exits 1
    const segment = readdirSync(join(store, 'streams', 'node-a'))[0]!
    appendFileSync(join(store, 'streams', 'node-a', segment), Buffer.from([0, 0, 0, 9, 1, 2]))
    const failed = await auditrail(['verify', store, '--trust', pub]).done
    t.equal(failed.code, 1)
    t.match(failed.stdout, new RegExp(`FAIL stream node-a, segment ${segment}, byte \\d+, sequence 4: truncated`))
  })
}

function pub(t: Test): string {
  const file = join(t.testdir(), 'node-a.pub.pem')
  writeFileSync(file, key.publicKey.export({ type: 'spki', format: 'pem' }))
  return file
}

t.test('usage errors exit 2 and name the problem', async (t) => {
  const unknown = await auditrail(['verify', t.testdir(), '--trust', 'x.pem', '--frobnicate']).done
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, /--frobnicate/)
  const noTrust = await auditrail(['verify', t.testdir()]).done
  t.equal(noTrust.code, 2)
  t.match(noTrust.stderr, /--trust PUBKEY_FILE is required/)
  const badListen = await auditrail(['collector', '--listen', 'localhost', '--store', 'x', '--trust', 'x.pem']).done
  t.equal(badListen.code, 2)
  t.match(badListen.stderr, /--listen "localhost" is not HOST:PORT/)
  const missingKey = await auditrail(['collector', '--listen', '127.0.0.1:0', '--store', t.testdir(), '--trust', '/nonexistent.pub.pem']).done
  t.equal(missingKey.code, 1)
  t.match(missingKey.stderr, /cannot read public key \/nonexistent\.pub\.pem: ENOENT/)
  const migrateDir = await auditrail(['collector', 'migrate', '--store', t.testdir()]).done
  t.equal(migrateDir.code, 2)
  t.match(migrateDir.stderr, /a file store needs no migration/)
  const passwordUrl = await auditrail(['verify', 'postgres://collector:s3cret@127.0.0.1:1/x', '--trust', pub(t)]).done
  t.equal(passwordUrl.code, 1)
  t.match(passwordUrl.stderr, /holds a password.*PGPASSWORD/)
  t.notMatch(passwordUrl.stderr + passwordUrl.stdout, /s3cret/, 'the password is not repeated')
})
