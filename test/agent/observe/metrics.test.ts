// A live scrape of the agent's /metrics, with every metric family present,
// passes Prometheus' own linter (promtool, from Debian's prometheus package)
// with no warning; the health endpoints say what they should.
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import t from 'tap'
import { Counter, Histogram } from 'prom-client'
import { AgentMetrics } from '../../../agent/observe/metrics.ts'
import { startObserveServer } from '../../../shared/observe-server.ts'

/** Give every metric a sample, labelled ones with one value per label, so each family is in the scrape. */
async function touchEverything(metrics: AgentMetrics): Promise<string[]> {
  const names: string[] = []
  for (const metric of metrics.registry.getMetricsAsArray()) {
    const name = (metric as unknown as { name: string }).name
    const labelNames = (metric as unknown as { labelNames?: string[] }).labelNames ?? []
    const labels = Object.fromEntries(labelNames.map((l) => [l, `sample-${l}`]))
    if (metric instanceof Counter) metric.inc(labels, 1)
    else if (metric instanceof Histogram) metric.observe(labels, 0.02)
    else if ('set' in metric && name.startsWith('auditrail_')) (metric as { set(labels: object, v: number): void }).set(labels, 1)
    names.push(name)
  }
  return names
}

t.test('/metrics: every family appears, and promtool check metrics passes with no warning', async (t) => {
  const metrics = new AgentMetrics()
  const names = await touchEverything(metrics)
  // The agent's section only: other sections list the collector's metrics and the database's roles.
  const section = /^## Metrics \(`\/metrics`[^\n]*\n([\s\S]*?)^## /m.exec(readFileSync(new URL('../../../docs/operations.md', import.meta.url), 'utf8'))?.[1] ?? ''
  const documented = [...section.matchAll(/^\| `(auditrail_[a-z_]+)/gm)].map((m) => m[1])
  t.same(names.filter((n) => n.startsWith('auditrail_')).sort(), documented.sort(), 'docs/operations.md lists exactly the agent\'s metrics')
  const server = await startObserveServer({ listen: '127.0.0.1:0', registry: metrics.registry, ready: () => false })
  t.teardown(() => server.close())

  const scrape = await fetch(`${server.url}/metrics`)
  t.equal(scrape.status, 200)
  t.match(scrape.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  const text = await scrape.text()
  for (const name of names) t.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is in the scrape`)
  t.match(text, /^auditrail_findings_total\{source="sample-source",id="sample-id",severity="sample-severity"\} 1$/m, 'labelled samples are exposed')
  t.match(text, /^auditrail_send_duration_seconds_bucket\{le="0\.025"\} 1$/m, 'histograms expose their buckets')
  t.match(text, /^process_resident_memory_bytes \d+/m, 'process metrics')

  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
  if (promtool.error) {
    t.fail(`promtool is missing: install Debian's prometheus package, which ships it (apt-get update && apt-get install -y prometheus): ${promtool.error.message}`)
    return
  }
  t.equal(promtool.status, 0, `promtool check metrics exits 0 ${promtool.stdout}${promtool.stderr}`.trim())
  t.equal(`${promtool.stdout}${promtool.stderr}`.trim(), '', 'promtool has nothing to say: no lint warning')
})

t.test('lines and findings counted on the hot path reach the counters when they are read, once', async (t) => {
  const metrics = new AgentMetrics()
  metrics.countLine(100)
  metrics.countLine(21)
  metrics.countFinding('rule', 'privileged-container', 'high')
  metrics.countFinding('rule', 'privileged-container', 'high')
  metrics.countFinding('detector', 'secret-read-burst', 'high')
  const first = await metrics.registry.metrics()
  t.match(first, /^auditrail_lines_read_total 2$/m)
  t.match(first, /^auditrail_bytes_read_total 121$/m)
  t.match(first, /^auditrail_findings_total\{source="rule",id="privileged-container",severity="high"\} 2$/m)
  t.match(first, /^auditrail_findings_total\{source="detector",id="secret-read-burst",severity="high"\} 1$/m)
  metrics.countLine(9)
  metrics.countFinding('rule', 'privileged-container', 'high')
  const second = await metrics.registry.metrics()
  t.match(second, /^auditrail_lines_read_total 3$/m, 'a second read adds only what came since')
  t.match(second, /^auditrail_bytes_read_total 130$/m)
  t.match(second, /^auditrail_findings_total\{source="rule",id="privileged-container",severity="high"\} 3$/m)
  t.equal((await metrics.findings.get()).values.find((v) => v.labels.source === 'detector')?.value, 1, 'get() reads them too')
})

t.test('promtool does catch a bad exposition (the check above can fail)', async (t) => {
  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: '# HELP bad_gauge_total x\n# TYPE bad_gauge_total gauge\nbad_gauge_total 1\n', encoding: 'utf8' })
  if (promtool.error) return t.fail("promtool is missing: install Debian's prometheus package (apt-get install -y prometheus)")
  t.match(`${promtool.stdout}${promtool.stderr}`, /non-counter metrics should not have "_total" suffix/)
})

t.test('/livez answers 200; /readyz answers 503 until ready, then 200; nothing else is served', async (t) => {
  let ready = false
  const server = await startObserveServer({ listen: '127.0.0.1:0', registry: new AgentMetrics().registry, ready: () => ready })
  t.teardown(() => server.close())
  t.equal((await fetch(`${server.url}/livez`)).status, 200)
  const notReady = await fetch(`${server.url}/readyz`)
  t.equal(notReady.status, 503)
  t.match(await notReady.text(), /not ready/)
  ready = true
  t.equal((await fetch(`${server.url}/readyz`)).status, 200)
  ready = false
  t.equal((await fetch(`${server.url}/readyz`)).status, 503, 'readiness is read on every probe')
  t.equal((await fetch(`${server.url}/healthz`)).status, 404, '/healthz is deprecated in Kubernetes and not served')
  t.equal((await fetch(`${server.url}/metrics`, { method: 'POST' })).status, 405)
})
