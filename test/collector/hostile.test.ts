// The collector as an attacker on the network meets it (issue 20): a real collector
// process on 127.0.0.1, each hostile request bounded in time.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import t, { type Test } from 'tap'
import { PUSH_BATCH_PATH } from '../../proto/wire.ts'
import { freePort, startProcess, stopProcess, waitFor, type Running } from '../e2e/processes.ts'
import { newToken } from '../../collector/readers.ts'
import { post, testKey } from './fixtures.ts'

const key = testKey()

async function collectorProcess(t: Test, extra: string[] = [], dir = t.testdir()): Promise<{ url: string; p: Running; dir: string }> {
  const pub = join(dir, 'node.pub.pem')
  writeFileSync(pub, key.publicKey.export({ type: 'spki', format: 'pem' }))
  const port = await freePort()
  const p = startProcess(['collector', '--listen', `127.0.0.1:${port}`, '--store', join(dir, 'store'), '--trust', pub, ...extra])
  t.teardown(() => stopProcess(p, 'SIGKILL'))
  await waitFor('the collector to listen', () => p.logs().includes('collector listening') || p.child.exitCode !== null, 20_000, 50)
  if (p.child.exitCode !== null) throw new Error(`the collector exited: ${p.logs()}`)
  return { url: `http://127.0.0.1:${port}`, p, dir }
}

/** Peak resident memory of a process, in MiB (Linux). */
function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(m?.[1]) / 1024
}

t.test('defect 1: a gzip bomb of 13.4 million tiny SealedBatch entries is refused while decoding', async (t) => {
  const { url, p } = await collectorProcess(t)
  // 0a 03 0a 01 41: batches { batch: "A" }, repeated until the body inflates to just under 64 MiB (the limit).
  const entry = Buffer.from([0x0a, 0x03, 0x0a, 0x01, 0x41])
  const body = Buffer.alloc(Math.floor((64 * 1024 * 1024) / entry.length) * entry.length)
  for (let i = 0; i < body.length; i += entry.length) entry.copy(body, i)
  const bomb = gzipSync(body, { level: 9 })
  t.ok(bomb.length < 200_000, `${bomb.length} bytes on the wire`)

  let livez = 0
  let livezFailed = 0
  const probing = setInterval(() => {
    fetch(`${url}/livez`, { signal: AbortSignal.timeout(1000) }).then((r) => (r.ok ? livez++ : livezFailed++), () => livezFailed++)
  }, 100)
  t.teardown(() => clearInterval(probing))
  const started = Date.now()
  const res = await Promise.race([
    post(url, PUSH_BATCH_PATH, bomb, { 'content-encoding': 'gzip' }),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer within 10 s')), 10_000)),
  ])
  const ms = Date.now() - started
  t.equal(res.status, 429)
  const error = JSON.parse(res.body.toString()) as { code: string; message: string }
  t.equal(error.code, 'resource_exhausted')
  t.match(error.message, /request\.batches: more than 64 batches per request, over the limit; send fewer/)
  t.ok(ms < 5000, `answered in ${ms} ms`)
  // The same entries uncompressed, up to the 16 MiB body limit (it stalled the collector 9 s at 1.5 GB).
  const plain = await post(url, PUSH_BATCH_PATH, body.subarray(0, Math.floor((16 * 1024 * 1024) / entry.length) * entry.length))
  t.equal(plain.status, 429)
  t.match(JSON.parse(plain.body.toString()).message, /request\.batches: more than 64 batches per request/)
  t.ok(Date.now() - started < 8000, `both answered in ${Date.now() - started} ms`)
  await new Promise((r) => setTimeout(r, 500))
  clearInterval(probing)
  t.equal(livezFailed, 0, '/livez kept answering')
  t.ok(livez > 0)
  t.equal((await fetch(`${url}/livez`)).status, 200)
  const peak = peakRssMiB(p.child.pid!)
  t.ok(peak < 600, `peak RSS ${Math.round(peak)} MiB`)
})

const alice = newToken('auditor', 'alice')
const bob = newToken('auditor', 'bob')

async function status(url: string, token: string): Promise<number> {
  return (await fetch(`${url}/v1/events`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) })).status
}

t.test('a reader removed from the readers file loses access without a restart; a broken file keeps the previous readers', async (t) => {
  const dir = t.testdir()
  const readers = join(dir, 'readers')
  writeFileSync(readers, `${alice.line}\n`)
  const { url, p } = await collectorProcess(t, ['--readers', readers], dir)
  t.equal(await status(url, alice.token), 200)
  t.equal(await status(url, bob.token), 401)

  writeFileSync(readers, `${bob.line}\n`)
  await waitFor('alice to be refused', async () => (await status(url, alice.token)) === 401, 10_000, 100)
  t.equal(await status(url, bob.token), 200, 'bob is in')
  t.match(p.logs(), /"added":\["bob"\],"removed":\["alice"\],"msg":"readers reloaded"/)

  writeFileSync(readers, `${bob.line}\nauditor ${'0'.repeat(64)} mallory\n`)
  await waitFor('the broken file to be reported', () => p.logs().includes('readers file not reloaded'), 10_000, 100)
  t.match(p.logs(), /readers line 2: expected 'ROLE sha256:HEX NAME'/)
  t.equal(await status(url, bob.token), 200, 'the previous readers stay')
})

t.test('SIGHUP reloads the readers and says so; SIGTERM and SIGINT log, finish and remove the lock', async (t) => {
  for (const stop of ['SIGTERM', 'SIGINT'] as const) {
    const dir = t.testdir()
    const readers = join(dir, 'readers')
    writeFileSync(readers, `${alice.line}\n`)
    const { url, p } = await collectorProcess(t, ['--readers', readers], dir)
    const lock = join(dir, 'store', 'collector.lock')
    t.ok(existsSync(lock))
    p.child.kill('SIGHUP')
    await waitFor('the reload on SIGHUP', () => p.logs().includes('"reason":"SIGHUP"') || p.child.exitCode !== null || p.child.signalCode !== null, 10_000, 50)
    t.equal(p.child.signalCode, null, 'SIGHUP did not end it')
    t.match(p.logs(), /"reason":"SIGHUP","readers":1,"added":\[\],"removed":\[\],"msg":"readers reloaded"/)
    t.equal(await status(url, alice.token), 200, 'still serving')
    p.child.kill(stop)
    t.equal(await p.exited, 0)
    t.match(p.logs(), new RegExp(`"signal":"${stop}","msg":"shutting down`))
    t.match(p.logs(), /collector closed/)
    t.notOk(existsSync(lock), 'the lock is gone')
  }
})
