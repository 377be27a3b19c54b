// The collector as an attacker on the network meets it (issue 20): a real collector
// process on 127.0.0.1, each hostile request bounded in time.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import t, { type Test } from 'tap'
import { PUSH_BATCH_PATH } from '../../proto/wire.ts'
import { freePort, startProcess, stopProcess, waitFor, type Running } from '../e2e/processes.ts'
import { post, testKey } from './fixtures.ts'

const key = testKey()

async function collectorProcess(t: Test, extra: string[] = []): Promise<{ url: string; p: Running; dir: string }> {
  const dir = t.testdir()
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
  await new Promise((r) => setTimeout(r, 500))
  clearInterval(probing)
  t.equal(livezFailed, 0, '/livez kept answering')
  t.ok(livez > 0)
  t.equal((await fetch(`${url}/livez`)).status, 200)
  const peak = peakRssMiB(p.child.pid!)
  t.ok(peak < 600, `peak RSS ${Math.round(peak)} MiB`)
})
