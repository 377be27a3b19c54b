// A live scrape of the agent's /metrics passes Prometheus' own linter
// (promtool, from Debian's prometheus package), and the health endpoints say
// what they should.
import { spawnSync } from 'node:child_process'
import t from 'tap'
import { AgentMetrics } from '../../../agent/observe/metrics.ts'
import { startObserveServer } from '../../../agent/observe/server.ts'

t.test('/metrics passes promtool check metrics with no warning; /livez and /readyz answer', async (t) => {
  const metrics = new AgentMetrics()
  // Touch every labelled family so each appears in the scrape.
  metrics.unparsedLines.inc({ reason: 'not JSON' })
  metrics.quarantinedLines.inc({ stored: 'true' })
  metrics.gaps.inc({ reason: 'deleted' })
  metrics.findings.inc({ source: 'rule', id: 'exec-into-pod', severity: 'high' })
  metrics.batchesSealed.inc({ kind: 'events' })
  metrics.sendFailures.inc({ reason: 'unavailable' })
  metrics.sendDuration.observe(0.02)
  metrics.appendToAck.observe(0.2)
  let ready = false
  const server = await startObserveServer({ listen: '127.0.0.1:0', registry: metrics.registry, ready: () => ready })
  t.teardown(() => server.close())

  const scrape = await fetch(`${server.url}/metrics`)
  t.equal(scrape.status, 200)
  t.match(scrape.headers.get('content-type'), /text\/plain; version=0\.0\.4/)
  const text = await scrape.text()
  for (const name of ['auditrail_lines_read_total', 'auditrail_lag_bytes', 'auditrail_lag_seconds', 'auditrail_send_duration_seconds_bucket', 'auditrail_chain_sequence', 'process_cpu_seconds_total', 'process_resident_memory_bytes']) {
    t.match(text, new RegExp(`^${name}`, 'm'), name)
  }
  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
  if (promtool.error) t.fail(`promtool not found: install Debian's prometheus package (apt-get install prometheus): ${promtool.error.message}`)
  else {
    t.equal(promtool.status, 0, promtool.stdout + promtool.stderr)
    t.equal((promtool.stdout + promtool.stderr).trim(), '', 'no warnings')
  }

  t.equal((await fetch(`${server.url}/livez`)).status, 200)
  t.equal((await fetch(`${server.url}/readyz`)).status, 503)
  ready = true
  t.equal((await fetch(`${server.url}/readyz`)).status, 200)
  t.equal((await fetch(`${server.url}/metrics`, { method: 'POST' })).status, 405)
})
