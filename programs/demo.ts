// `auditrail demo`: the whole path on one machine. A collector and an agent on
// 127.0.0.1 with fresh keys, a generated audit log that rotates the way the
// apiserver's does (rename, gzip, retention), then the proof: the collector's
// export equals what was written, byte for byte, and the verifier accepts the chain.
// Then what the path is for: an attack story woven into the log, the findings it
// raised, the alerts a local receiver got, and one query to the collector about it.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import type { Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { createHash } from 'node:crypto'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { exportStream } from '../collector/export.ts'
import { newToken, parseReaders } from '../collector/readers.ts'
import { startCollector } from '../collector/server.ts'
import { verifyStore } from '../collector/verify.ts'
import { loadTrustedKeys } from '../proto/keys.ts'
import { SEVERITIES, severityRank, type Finding, type Severity } from '../proto/wire.ts'
import { generateAuditLog } from '../scripts/generate-audit-log.ts'
import { AuditAgent } from '../agent/agent.ts'
import { createAlertDispatcher } from '../agent/alert/dispatcher.ts'
import { AgentMetrics } from '../agent/observe/metrics.ts'
import type { WebhookAlert } from '../agent/alert/webhook.ts'
import type { AuditEvent } from '../agent/audit/event.ts'
import { expectedExport } from '../agent/redact/expected-export.ts'
import { loadAgentConfig } from '../agent/config.ts'
import { generateKeyPair } from '../agent/keygen.ts'
import { createServer } from '../shared/node-http.ts'

/** Findings listed one line each after the counts. */
const TOP_FINDINGS = 6
/** Backups the demo's apiserver keeps (see where the log is generated). */
const DEMO_BACKUPS = 20
/** Bound on the (rule, user) groups the demo keeps for that list. */
const MAX_GROUPS = 10_000

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
    // A reader for the query at the end, as `auditrail collector token` makes one.
    const reader = newToken('auditor', 'demo')
    const tokenFile = join(dir, 'reader.token')
    writeFileSync(tokenFile, `${reader.token}\n`, { mode: 0o600 })
    const collector = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: store, trustedKeys: trusted, logger: pino({ level: 'silent' }), readers: parseReaders(reader.line) })
    const receiver = await startAlertReceiver()
    const logDir = join(dir, 'log')
    const config = loadAgentConfig({
      overrides: { node: 'demo-node', 'collector.url': collector.url, 'tail.path': join(logDir, 'audit.log'), stateDir: join(dir, 'state'), 'signing.keyFile': keys.keyFile, logLevel: 'warn', 'alert.webhook.url': receiver.url, 'alert.webhook.format': 'array' },
      env: {},
    })
    say(`collector  ${collector.url}  store ${store}`)
    say(`agent      node demo-node, key ${keys.keyFile}`)
    say(`log        ${logDir}/audit.log: ${events} events at ${rate}/s, rotated every 1 MiB (every 2nd backup gzipped, ${DEMO_BACKUPS} kept)`)

    // Sample one line in 20: when it was written and where it ends, to time it to its acknowledgement.
    const samples: Array<{ inode: number; offset: number; at: number }> = []
    let acknowledgedRecords = 0
    const latencies: number[] = []
    const logger = pino({ level: process.env.AUDITRAIL_DEMO_LOG ?? 'warn' }, pino.destination(2))
    const agentMetrics = new AgentMetrics()
    const alerts = createAlertDispatcher(config, { logger, metrics: agentMetrics })
    const findings = new FindingTally()
    const agent = new AuditAgent(config, {
      logger,
      metrics: agentMetrics,
      onFinding: (finding, event) => {
        findings.add(finding, event)
        alerts?.onFinding(finding, event)
      },
      onAcknowledged: (items) => {
        const now = performance.now()
        for (const item of items) {
          acknowledgedRecords += item.recordCount
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
      // 20 backups (20 MiB of log) of slack: on a loaded laptop or CI machine the agent may fall a few seconds
      // behind, and retention deleting an unread backup would turn the demo's lossless story into declared gaps.
      maxBackups: DEMO_BACKUPS,
      gzipEvery: 2,
      mode: 'rename',
      // Two thirds in (a request is about two lines).
      attackAfter: Math.floor(events / 3),
      onLine: (w, line) => {
        if (n++ % 20 === 0) samples.push({ ...w.position(), at: performance.now() })
        expected.add(line.subarray(0, line.length - 1))
      },
    })
    // Stop once every line written is acknowledged, counted in records: a position would not do, as the
    // live file can have the inode number of a backup deleted when it was gzipped, and a loaded machine's
    // agent, still reading that backup, was stopped early (the export then differed).
    const done = () => acknowledgedRecords >= n
    const deadline = Date.now() + 60_000
    while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    await agent.stop()
    await alerts?.close()
    await collector.indexer?.idle()
    const top = findings.top(TOP_FINDINGS)
    const user = top[0]?.user
    const query = user ? await queryEvents(collector.url, reader.token, user) : undefined
    await collector.close()
    await receiver.close()

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
    say('')
    say(`findings   ${findings.total} raised on the node as lines were read: ${[...SEVERITIES].reverse().map((sev) => `${sev} ${findings.bySeverity.get(sev) ?? 0}`).join(', ')}`)
    for (const f of top) say(`  ${f.severity.padEnd(8)}  ${`${f.source}:${f.id}`.padEnd(34)}  ${f.user.padEnd(24)}  ${f.object.padEnd(40)}  ${f.time}${f.count > 1 ? `  (${f.count} by this user)` : ''}`)
    const sent = await value(metrics.alertsSent)
    say(`alerts     ${receiver.alerts} at ${config.alert.minSeverity} or above reached the webhook receiver on ${receiver.url} in ${receiver.requests} requests (${[...receiver.bySeverity].map(([sev, n]) => `${sev} ${n}`).join(', ') || 'none'}); the agent counted ${sent} sent, ${await value(metrics.alertsDeduplicated)} held back as repeats`)
    if (user && query) {
      say(`query      events by ${user}: ${query.events} (${query.refused} refused with 403), ${query.withFindings} of them with findings; first ${query.first}, last ${query.last}`)
      say(`           $ npx auditrail query --url ${collector.url} --token-file ${tokenFile} --user ${user}`)
      say(`           (or, with --keep, after the demo: npx auditrail query --store ${store} --user ${user})`)
    }
    say(values.keep ? `kept       ${dir}` : `(run with --keep to keep ${dir})`)
    return verified.ok && same && lines === written.events && findings.total > 0 && receiver.alerts > 0 && query !== undefined ? 0 : 1
  } finally {
    if (!values.keep) rmSync(dir, { recursive: true, force: true })
  }
}

interface ListedFinding {
  severity: Severity
  source: string
  id: string
  user: string
  object: string
  time: string
  count: number
}

/** Findings counted by severity, and grouped by rule and user for the list (at most MAX_GROUPS groups). */
class FindingTally {
  total = 0
  readonly bySeverity = new Map<Severity, number>()
  readonly #groups = new Map<string, ListedFinding>()
  /** Findings per user: how familiar a user is. */
  readonly #perUser = new Map<string, number>()

  add(finding: Omit<Finding, 'recordIndex'>, event: AuditEvent): void {
    this.total++
    this.bySeverity.set(finding.severity, (this.bySeverity.get(finding.severity) ?? 0) + 1)
    const user = event.user?.username ?? ''
    const key = JSON.stringify([finding.source, finding.id, user])
    const seen = this.#groups.get(key)
    if (!seen && this.#groups.size >= MAX_GROUPS) return
    this.#perUser.set(user, (this.#perUser.get(user) ?? 0) + 1)
    const ref = event.objectRef
    const object = ref?.resource ? [ref.namespace, [ref.resource, ref.name, ref.subresource].filter(Boolean).join('/')].filter(Boolean).join(' ') : (event.requestURI?.split('?')[0] ?? '')
    const time = (event.stageTimestamp ?? '').slice(11, 23)
    this.#groups.set(key, { severity: finding.severity, source: finding.source, id: finding.id, user, object, time, count: (seen?.count ?? 0) + 1 })
  }

  /**
   * One line per rule, the most severe first. For each rule, the user for whom it is rarest (the 7th
   * cluster-admin binding of a platform admin is routine, a contractor's first one is not), among them the
   * user seen least; then the newest.
   */
  top(n: number): ListedFinding[] {
    const familiarity = (f: ListedFinding) => this.#perUser.get(f.user) ?? 0
    const order = (a: ListedFinding, b: ListedFinding) => severityRank(b.severity) - severityRank(a.severity) || a.count - b.count || familiarity(a) - familiarity(b) || b.time.localeCompare(a.time)
    const perRule = new Map<string, ListedFinding>()
    for (const g of [...this.#groups.values()].sort(order)) if (!perRule.has(`${g.source}:${g.id}`)) perRule.set(`${g.source}:${g.id}`, g)
    return [...perRule.values()].slice(0, n)
  }
}

interface AlertReceiver {
  url: string
  alerts: number
  requests: number
  bySeverity: Map<string, number>
  close(): Promise<void>
}

/** A webhook receiver on 127.0.0.1 that counts the alerts posted to it (format: array), by severity. */
async function startAlertReceiver(): Promise<AlertReceiver> {
  const counts: Omit<AlertReceiver, 'url' | 'close'> = { alerts: 0, requests: 0, bySeverity: new Map() }
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      let alerts: WebhookAlert[]
      try {
        alerts = JSON.parse(Buffer.concat(chunks).toString('utf8')) as WebhookAlert[]
      } catch {
        res.writeHead(400).end()
        return
      }
      counts.requests++
      for (const a of alerts) {
        counts.alerts++
        counts.bySeverity.set(a.severity, (counts.bySeverity.get(a.severity) ?? 0) + 1)
      }
      res.writeHead(204).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/alerts`
  return Object.assign(counts, { url, close: () => new Promise<void>((resolve) => server.close(() => resolve())) })
}

/** GET /v1/events?user=...: one page of up to 1,000 events, summed up. */
async function queryEvents(url: string, token: string, user: string) {
  const res = await fetch(new URL(`/v1/events?${new URLSearchParams({ user, limit: '1000' })}`, url), { headers: { authorization: `Bearer ${token}` } })
  if (res.status !== 200) throw new Error(`the demo's query to ${url} failed: HTTP ${res.status} ${await res.text()}`)
  const results = (await res.text()).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { time: string; event: { responseStatus?: { code?: number } }; findings: unknown[] })
  return {
    events: results.length,
    refused: results.filter((r) => r.event.responseStatus?.code === 403).length,
    withFindings: results.filter((r) => r.findings.length > 0).length,
    first: results[0]?.time.slice(11, 23) ?? '-',
    last: results.at(-1)?.time.slice(11, 23) ?? '-',
  }
}
