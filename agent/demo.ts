// `auditrail demo`: the whole path on one machine. A collector and an agent on
// 127.0.0.1 with fresh keys, a generated audit log that rotates the way the
// apiserver's does (rename, gzip, retention), then the proof: the collector's
// export equals what was written, byte for byte, and the verifier accepts the chain.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { createHash } from 'node:crypto'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { exportStream } from '../collector/export.ts'
import { startCollector } from '../collector/server.ts'
import { verifyStore } from '../collector/verify.ts'
import { loadTrustedKeys } from '../proto/keys.ts'
import { generateAuditLog } from '../scripts/generate-audit-log.ts'
import { AuditAgent } from './agent.ts'
import { expectedExport } from './redact/expected-export.ts'
import { loadAgentConfig } from './config.ts'
import { generateKeyPair } from './keygen.ts'

export async function demoCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { events: { type: 'string', default: '30000' }, rate: { type: 'string', default: '3000' }, keep: { type: 'boolean', default: false } },
    strict: true,
  })
  const events = Number(values.events)
  const rate = Number(values.rate)
  if (!Number.isSafeInteger(events) || events < 1) throw new Error('--events: expected a whole number above 0')
  if (!Number.isSafeInteger(rate) || rate < 1) throw new Error('--rate: expected events per second, a whole number above 0')
  const dir = mkdtempSync(join(tmpdir(), 'auditrail-demo-'))
  const say = (line: string) => process.stdout.write(`${line}\n`)
  try {
    const keys = generateKeyPair(join(dir, 'node'))
    const store = join(dir, 'store')
    const trusted = loadTrustedKeys([keys.publicKeyFile])
    const collector = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: store, trustedKeys: trusted, logger: pino({ level: 'silent' }) })
    const logDir = join(dir, 'log')
    const config = loadAgentConfig({
      overrides: { node: 'demo-node', 'collector.url': collector.url, 'tail.path': join(logDir, 'audit.log'), stateDir: join(dir, 'state'), 'signing.keyFile': keys.keyFile, logLevel: 'warn' },
      env: {},
    })
    say(`collector  ${collector.url}  store ${store}`)
    say(`agent      node demo-node, key ${keys.keyFile}`)
    say(`log        ${logDir}/audit.log: ${events} events at ${rate}/s, rotated every 1 MiB (every 2nd backup gzipped, 5 kept)`)

    // Sample one line in 20: when it was written and where it ends, to time it to its acknowledgement.
    const samples: Array<{ inode: number; offset: number; at: number }> = []
    const latencies: number[] = []
    const agent = new AuditAgent(config, {
      logger: pino({ level: process.env.AUDITRAIL_DEMO_LOG ?? 'warn' }, pino.destination(2)),
      onAcknowledged: (items) => {
        const now = performance.now()
        for (const item of items) {
          if (!item.position) continue
          const { inode } = item.position.identity
          while (samples.length > 0 && samples[0]!.inode === inode && samples[0]!.offset <= item.position.offset) latencies.push(now - samples.shift()!.at)
        }
      },
    })
    mkdirSync(logDir, { recursive: true })
    await agent.start()
    // What the export must hold: every generated line, secret values redacted as the agent does.
    const expected = expectedExport(config.stateDir)
    let n = 0
    const written = await generateAuditLog({
      dir: logDir,
      events,
      rate,
      seed: 2026,
      maxBytes: 1024 * 1024,
      maxBackups: 5,
      gzipEvery: 2,
      mode: 'rename',
      onLine: (w, line) => {
        if (n++ % 20 === 0) samples.push({ ...w.position(), at: performance.now() })
        expected.add(line.subarray(0, line.length - 1))
      },
    })
    const deadline = Date.now() + 60_000
    while (samples.length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    await agent.stop()
    await collector.close()

    const hash = createHash('sha256')
    const { lines } = await exportStream(store, { out: new Writable({ write(chunk: Buffer, _e, cb) { hash.update(chunk); cb() } }) })
    const verified = await verifyStore(store, trusted)
    const same = hash.digest('hex') === expected.sha256()
    latencies.sort((a, b) => a - b)
    const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]?.toFixed(0) ?? '-'
    const metrics = agent.metrics
    const value = async (m: { get(): Promise<{ values: Array<{ value: number }> }> }) => (await m.get()).values.reduce((s, v) => s + v.value, 0)
    say('')
    say(`written    ${written.events} events, ${(written.bytes / 1e6).toFixed(1)} MB, ${written.rotations} rotations, in ${(written.elapsedMs / 1000).toFixed(1)} s`)
    say(`stored     ${lines} events in ${verified.streams[0]?.headSequence ?? 0} sealed batches (${await value(metrics.batchesSealed)} sealed, heartbeats included); ${await value(metrics.rotations)} rotations followed`)
    say(`latency    line written -> batch acknowledged: p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${q(1)} ms (${latencies.length} samples)`)
    say(`verify     ${verified.ok ? 'ok: every signature and chain link holds, no sequence missing' : `FAILED: ${JSON.stringify(verified.problem)}`}`)
    say(`export     ${same ? `identical to the generated log byte for byte, except the secret values of ${expected.redactedLines} lines, redacted on the node` : 'DIFFERS from the generated log'}`)
    say(values.keep ? `kept       ${dir}` : `(run with --keep to keep ${dir})`)
    return verified.ok && same && lines === written.events ? 0 : 1
  } finally {
    if (!values.keep) rmSync(dir, { recursive: true, force: true })
  }
}
