#!/usr/bin/env node
// `npm run bench:alert`: how fast a finding reaches people, against a real
// Alertmanager (Debian's prometheus-alertmanager) on 127.0.0.1.
//   1. offer to visible: 200 findings offered one at a time to the
//      AlertDispatcher; each is timed from offer() until GET /api/v2/alerts shows it.
//   2. append to visible: 200 audit lines appended one at a time to the live
//      log of a real AuditAgent (collector on 127.0.0.1, the built-in
//      secret-read-by-human rule finds them); each is timed from the append until Alertmanager shows it.
// Alertmanager is polled every --poll-ms (2 ms): the figures include up to that much.
// Prints the figures, writes them as JSON to bench-out/, and inserts a dated row
// in the Alerts table of docs/benchmarks.md.
//   node scripts/bench-alert.ts [--alerts N] [--poll-ms MS]
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { execFileSync } from 'node:child_process'
import { pino } from 'pino'
import { AuditAgent } from '../agent/agent.ts'
import { AlertDispatcher, createAlertDispatcher } from '../agent/alert/dispatcher.ts'
import { loadAgentConfig } from '../agent/config.ts'
import { generateKeyPair } from '../agent/keygen.ts'
import { AgentMetrics } from '../agent/observe/metrics.ts'
import { startCollector } from '../collector/server.ts'
import { loadTrustedKeys } from '../proto/keys.ts'
import { ALERTMANAGER_BINARY, startAlertmanager, type RunningAlertmanager } from './alertmanager.ts'
import { insertBenchmarkRow } from './benchmarks-doc.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values } = parseArgs({ options: { alerts: { type: 'string', default: '200' }, 'poll-ms': { type: 'string', default: '2' } }, strict: true })
const N = Number(values.alerts)
const POLL_MS = Number(values['poll-ms'])
const say = (s: string) => process.stdout.write(`${s}\n`)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Figures {
  count: number
  p50Ms: number
  p99Ms: number
  maxMs: number
}

function figures(samples: number[]): Figures {
  const s = [...samples].sort((a, b) => a - b)
  const at = (q: number) => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!
  return { count: s.length, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: s.at(-1)! }
}

/** Time until Alertmanager lists an alert whose `user` label is `user`. */
async function visible(am: RunningAlertmanager, user: string, since: number): Promise<number> {
  const filter = encodeURIComponent(`user="${user}"`)
  for (;;) {
    const res = await fetch(`${am.url}/api/v2/alerts?filter=${filter}`)
    const alerts = (await res.json()) as unknown[]
    if (alerts.length > 0) return performance.now() - since
    if (performance.now() - since > 10_000) throw new Error(`alert for ${user} not visible after 10 s`)
    await sleep(POLL_MS)
  }
}

const auditLine = (i: number) => JSON.stringify({
  kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'Metadata', auditID: `${String(i).padStart(8, '0')}-3333-4000-8000-000000000000`, stage: 'ResponseComplete',
  requestURI: `/api/v1/namespaces/prod/secrets/s${i}`, verb: 'get', user: { username: `append-${i}` }, sourceIPs: ['10.0.0.8'],
  objectRef: { resource: 'secrets', namespace: 'prod', name: `s${i}`, apiVersion: 'v1' }, responseStatus: { code: 200 }, stageTimestamp: new Date().toISOString(),
})

async function offerToVisible(am: RunningAlertmanager): Promise<number[]> {
  const config = loadAgentConfig({ overrides: { node: 'bench', 'collector.url': 'https://c:1', 'alert.alertmanager.url': am.url, 'alert.minSeverity': 'medium' }, env: {} }).alert
  const alerts = new AlertDispatcher({ config, node: 'bench', logger: pino({ level: 'silent' }), metrics: new AgentMetrics() })
  const samples: number[] = []
  try {
    for (let i = 0; i < N; i++) {
      const e = JSON.parse(auditLine(i)) as Parameters<AlertDispatcher['offer']>[1]
      e.user = { username: `offer-${i}` }
      const started = performance.now()
      alerts.offer({ source: 'rule', id: 'bench-offer', severity: 'high', message: 'bench', auditId: e.auditID, details: {} }, e)
      samples.push(await visible(am, `offer-${i}`, started))
    }
  } finally {
    await alerts.close()
  }
  return samples
}

async function appendToVisible(am: RunningAlertmanager, dir: string): Promise<number[]> {
  mkdirSync(join(dir, 'log'), { recursive: true })
  const keys = generateKeyPair(join(dir, 'node'))
  const collector = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: join(dir, 'store'), trustedKeys: loadTrustedKeys([keys.publicKeyFile]) })
  const config = loadAgentConfig({
    overrides: { node: 'bench', 'collector.url': collector.url, 'tail.path': join(dir, 'log', 'audit.log'), stateDir: join(dir, 'state'), 'signing.keyFile': keys.keyFile, 'alert.alertmanager.url': am.url, 'alert.minSeverity': 'medium' },
    env: {},
  })
  const logger = pino({ level: 'silent' })
  const metrics = new AgentMetrics()
  const alerts = createAlertDispatcher(config, { logger, metrics })!
  const agent = new AuditAgent(config, { logger, metrics, onFinding: alerts.onFinding })
  writeFileSync(config.tail.path, '')
  await agent.start()
  const samples: number[] = []
  try {
    for (let i = 0; i < N; i++) {
      const started = performance.now()
      appendFileSync(config.tail.path, `${auditLine(i)}\n`)
      samples.push(await visible(am, `append-${i}`, started))
    }
  } finally {
    await agent.stop()
    await alerts.close()
    await collector.close()
  }
  return samples
}

const started = new Date()
const dir = mkdtempSync(join(tmpdir(), 'auditrail-bench-alert-'))
const am = await startAlertmanager(dir)
let offer: Figures
let append: Figures
try {
  say(`Alertmanager ${am.url}; ${N} alerts each way, polled every ${POLL_MS} ms`)
  offer = figures(await offerToVisible(am))
  say(`offer() to visible:  p50 ${offer.p50Ms.toFixed(1)} ms, p99 ${offer.p99Ms.toFixed(1)} ms, max ${offer.maxMs.toFixed(1)} ms`)
  append = figures(await appendToVisible(am, join(dir, 'agent')))
  say(`append to visible:   p50 ${append.p50Ms.toFixed(1)} ms, p99 ${append.p99Ms.toFixed(1)} ms, max ${append.maxMs.toFixed(1)} ms`)
} finally {
  await am.stop()
  rmSync(dir, { recursive: true, force: true })
}

const version = /version (\S+)/.exec(execFileSync(ALERTMANAGER_BINARY, ['--version'], { encoding: 'utf8' }))?.[1] ?? '?'
const cpu = (cpus()[0]?.model ?? 'unknown').replace(/\s+\d+-Core Processor$/, '').trim()
const result = { date: started.toISOString(), node: process.version, cpu, cores: cpus().length, alertmanager: version, pollMs: POLL_MS, offerToVisible: offer, appendToVisible: append }
mkdirSync(join(ROOT, 'bench-out'), { recursive: true })
const jsonFile = join(ROOT, 'bench-out', `bench-alert-${started.toISOString().replace(/[:.]/g, '-')}.json`)
writeFileSync(jsonFile, `${JSON.stringify(result, null, 2)}\n`)

const f = (x: Figures) => `${x.p50Ms.toFixed(0)} / ${x.p99Ms.toFixed(0)} / ${x.maxMs.toFixed(0)}`
insertBenchmarkRow(join(ROOT, 'docs', 'benchmarks.md'), 'Alerts', `| ${started.toISOString().slice(0, 10)} | ${process.version} | ${cpu} x${cpus().length} | ${version} | ${N} | ${f(offer)} | ${f(append)} |`)
say(`figures: ${jsonFile}; row added to the Alerts table of docs/benchmarks.md`)
