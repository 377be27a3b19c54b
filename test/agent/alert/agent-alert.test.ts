// End to end through the agent: a line appended to the audit log, read by a
// real AuditAgent (tailer, collector on 127.0.0.1), found by the built-in
// secret-read-by-human rule,
// offered through AgentDeps.onFinding, and visible in a real Alertmanager's
// API, within 1 second of the append.
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { pino } from 'pino'
import t from 'tap'
import { AuditAgent } from '../../../agent/agent.ts'
import { createAlertDispatcher } from '../../../agent/alert/dispatcher.ts'
import { loadAgentConfig } from '../../../agent/config.ts'
import { generateKeyPair } from '../../../agent/keygen.ts'
import { AgentMetrics } from '../../../agent/observe/metrics.ts'
import { startCollector } from '../../../collector/server.ts'
import { loadTrustedKeys } from '../../../proto/keys.ts'
import { startAlertmanager } from '../../../scripts/alertmanager.ts'

const line = (i: number) => JSON.stringify({
  kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'Metadata', auditID: `${String(i).padStart(8, '0')}-2222-4000-8000-000000000000`, stage: 'ResponseComplete',
  requestURI: `/api/v1/namespaces/prod/secrets/s${i}`, verb: 'get', user: { username: `user-${i}` }, sourceIPs: ['10.0.0.8'],
  objectRef: { resource: 'secrets', namespace: 'prod', name: `s${i}`, apiVersion: 'v1' }, responseStatus: { code: 200 }, stageTimestamp: new Date().toISOString(),
})

t.test('appended to the audit log, visible in Alertmanager within 1 s; no sink, no alerting', async (t) => {
  const dir = t.testdir()
  mkdirSync(join(dir, 'log'))
  const am = await startAlertmanager(join(dir))
  t.teardown(() => am.stop())
  const keys = generateKeyPair(join(dir, 'node'))
  const collector = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: join(dir, 'store'), trustedKeys: loadTrustedKeys([keys.publicKeyFile]) })
  t.teardown(() => collector.close())
  const file = join(dir, 'agent.yaml')
  writeFileSync(file, `alert:\n  minSeverity: medium\n  alertmanager:\n    url: ${am.url}\n`)
  const config = loadAgentConfig({ file, overrides: { node: 'cp-e2e', 'collector.url': collector.url, 'tail.path': join(dir, 'log', 'audit.log'), stateDir: join(dir, 'state'), 'signing.keyFile': keys.keyFile }, env: {} })
  config.tail.pollIntervalMs = 50
  const logger = pino({ level: 'silent' })
  const metrics = new AgentMetrics()
  const alerts = createAlertDispatcher(config, { logger, metrics })
  t.ok(alerts, 'a configured Alertmanager turns alerting on')
  const agent = new AuditAgent(config, { logger, metrics, ...(alerts ? { onFinding: alerts.onFinding } : {}) })
  t.teardown(async () => {
    await agent.stop()
    await alerts?.close()
  })
  writeFileSync(config.tail.path, '')
  await agent.start()

  const delays: number[] = []
  for (let i = 1; i <= 5; i++) {
    const appended = performance.now()
    appendFileSync(config.tail.path, `${line(i)}\n`)
    for (;;) {
      if ((await am.alerts()).some((a) => a.labels.user === `user-${i}`)) break
      if (performance.now() - appended > 3000) break
      await new Promise((r) => setTimeout(r, 5))
    }
    delays.push(performance.now() - appended)
  }
  t.ok(delays.every((d) => d < 1000), `append to visible in Alertmanager: ${delays.map((d) => d.toFixed(0)).join(', ')} ms (each under 1000)`)
  const got = (await am.alerts()).find((a) => a.labels.user === 'user-3')!
  const { group, ...labels } = got.labels
  t.same(labels, { alertname: 'secret-read-by-human', severity: 'medium', source: 'rule', node: 'cp-e2e', user: 'user-3', namespace: 'prod', resource: 'secrets/s3', auditrail: 'true' })
  t.match(group, /^secret-read-by-human-[0-9a-f]{16}$/, 'the alert is its finding group\'s')
  t.same([got.annotations.groupState, got.annotations.groupCount], ['open', '1'])
  t.equal(got.annotations.auditID, '00000003-2222-4000-8000-000000000000')
  t.equal(createAlertDispatcher(loadAgentConfig({ overrides: { node: 'n', 'collector.url': collector.url }, env: {} }), { logger, metrics }), undefined, 'no sink configured: no alerting')
  // Stopped here as well: tap removes the test directory before the teardowns run, and the running
  // agent's checkpoint writes into it made that removal fail (ENOTEMPTY).
  await agent.stop()
  await collector.close()
})
