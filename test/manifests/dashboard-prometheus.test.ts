// Debian's Prometheus on 127.0.0.1 scrapes a running agent and collector; then every query of the Grafana
// dashboard (manifests/dashboards/auditrail.json) and every alert expression (manifests/prometheusrule.yaml)
// goes through Prometheus's HTTP API. Each must parse; each dashboard query must return series, so that a
// renamed metric, a wrong label or a typo in a panel shows here and not on an empty graph in production.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { parseAllDocuments } from 'yaml'
import { startObserveServer } from '../../shared/observe-server.ts'
import { encodePushBatchRequest, PUSH_BATCH_PATH } from '../../proto/wire.ts'
import { agentRig, until } from '../agent/agent-rig.ts'
import { Chain, post, testKey } from '../collector/fixtures.ts'

const MANIFESTS = new URL('../../manifests/', import.meta.url)

interface Dashboard {
  panels: Array<{ title: string; type: string; targets?: Array<{ expr: string }> }>
}
interface Rule {
  alert: string
  expr: string
}
/** /api/v1/query's answer, the parts read here. */
interface QueryAnswer {
  status: 'success' | 'error'
  error?: string
  data?: { result: unknown[] }
}

const dashboard = JSON.parse(readFileSync(new URL('dashboards/auditrail.json', MANIFESTS), 'utf8')) as Dashboard
const panelQueries = dashboard.panels.flatMap((p) => (p.targets ?? []).map((target) => ({ panel: p.title, expr: target.expr })))
const alerts: Rule[] = parseAllDocuments(readFileSync(new URL('prometheusrule.yaml', MANIFESTS), 'utf8'))
  .flatMap((d) => (d.toJS() as { spec: { groups: Array<{ rules: Rule[] }> } }).spec.groups)
  .flatMap((g) => g.rules)

/** A port nobody listens on now (Prometheus takes it a moment later; a clash fails the start, not the test's checks). */
async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

t.test('every dashboard query returns series and every alert expression parses, on a live Prometheus', async (t) => {
  // A privileged pod: the built-in pack's privileged-container rule (high) and pod-created (info) match it.
  const s = await agentRig(t, () => {}, { metricsListen: '127.0.0.1:0' })
  writeFileSync(s.logPath, `${JSON.stringify({
    kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'Request', auditID: 'priv-0001', stage: 'ResponseComplete', verb: 'create', requestURI: '/api/v1/namespaces/default/pods',
    user: { username: 'mallory', groups: ['system:authenticated'] }, objectRef: { resource: 'pods', namespace: 'default', name: 'x', apiVersion: 'v1' }, responseStatus: { code: 201 },
    requestObject: { kind: 'Pod', metadata: { name: 'x' }, spec: { containers: [{ name: 'c', image: 'busybox', securityContext: { privileged: true } }] } },
    stageTimestamp: new Date().toISOString(),
  })}\n`)
  const agent = await s.start()
  // The agent's CLI serves its registry with this same server (observe.listen).
  const agentObserve = await startObserveServer({ listen: '127.0.0.1:0', registry: agent.metrics.registry, ready: () => true })
  s.closeLater(() => agentObserve.close())
  await until('a finding is counted and its batch acknowledged', async () => (await agent.metrics.findings.get()).values.length > 0 && (await agent.metrics.batchesAcknowledged.get()).values[0]!.value > 0)
  // A refusal, so that the refusals panel has a series: a batch signed by a key the collector does not trust.
  t.equal((await post(s.collector.url, PUSH_BATCH_PATH, encodePushBatchRequest(new Chain('node-z', testKey()).grow(1)))).status, 401)

  const dir = mkdtempSync(join(tmpdir(), 'auditrail-prometheus-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // The job names the PodMonitors give (the alerts' up{job=...} name them).
  writeFileSync(join(dir, 'prometheus.yml'), JSON.stringify({
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    scrape_configs: [
      { job_name: 'auditrail/auditrail-agent', static_configs: [{ targets: [new URL(agentObserve.url).host] }] },
      { job_name: 'auditrail/auditrail-collector', static_configs: [{ targets: [new URL(s.collector.metricsUrl!).host] }] },
    ],
  }))
  const port = await freePort()
  const prometheus = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  prometheus.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  const exited = new Promise<void>((resolve) => prometheus.once('exit', () => resolve()))
  const spawnFailed = new Promise<Error>((resolve) => prometheus.once('error', resolve))
  t.teardown(async () => {
    prometheus.kill()
    await exited
  })

  const query = async (expr: string): Promise<QueryAnswer> => {
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?${new URLSearchParams({ query: expr })}`)
    return (await res.json()) as QueryAnswer
  }
  const started = await Promise.race([
    until('Prometheus answers', () => fetch(`http://127.0.0.1:${port}/-/ready`).then((r) => r.ok, () => false), 20_000).then(() => undefined, (err: Error) => err),
    spawnFailed,
  ])
  if (started) return t.fail(`Prometheus did not start (Debian's prometheus package: apt-get install -y prometheus): ${started.message} ${stderr}`)

  // rate() over the panels' windows needs two scrapes of each target; the slowest panel decides.
  const empty = async () => (await Promise.all(panelQueries.map(async (q) => ((await query(q.expr)).data?.result.length ? undefined : q)))).filter((q) => q !== undefined)
  await until('every panel has series', async () => (await empty()).length === 0, 30_000).catch(() => {})

  for (const q of panelQueries) {
    const answer = await query(q.expr)
    t.equal(answer.status, 'success', `${q.panel}: ${q.expr} parses ${answer.error ?? ''}`)
    t.ok(answer.data?.result.length, `${q.panel}: ${q.expr} returns series`)
  }
  t.ok(alerts.length >= 15, 'the agent\'s and the collector\'s alerts')
  for (const a of alerts) {
    const answer = await query(a.expr)
    t.equal(answer.status, 'success', `${a.alert}: ${a.expr} parses ${answer.error ?? ''}`)
  }
  const up = await query('up == 1')
  t.equal(up.data?.result.length, 2, 'both targets scraped')
  // The checks above can fail: a broken expression is refused, a misspelt metric returns nothing.
  t.equal((await query('sum by (reason (rate(auditrail_collector_batches_refused_total[5m]))')).status, 'error')
  t.same((await query('auditrail_collector_batches_refused_totl')).data?.result, [])
})
