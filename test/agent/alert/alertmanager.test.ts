// Alerts reach a real Alertmanager (Debian's prometheus-alertmanager, started
// here on 127.0.0.1 with a null receiver and gossip off) through its v2 API,
// with the labels and annotations people route and read by, within 1 s.
import { performance } from 'node:perf_hooks'
import t from 'tap'
import { AlertDispatcher } from '../../../agent/alert/dispatcher.ts'
import { AgentMetrics } from '../../../agent/observe/metrics.ts'
import { startAlertmanager, type GettableAlert } from '../../../scripts/alertmanager.ts'
import { alertConfig, capturedLogger, event, finding } from './fixtures.ts'

t.test('a finding is in Alertmanager within 1 s of offer(), with its labels, annotations and times', async (t) => {
  const am = await startAlertmanager(t.testdir())
  t.teardown(() => am.stop())
  const metrics = new AgentMetrics()
  const config = alertConfig({ alertmanager: { url: am.url, resolveTimeout: '5m' }, minSeverity: 'medium' })
  const alerts = new AlertDispatcher({ config, node: 'cp-1', logger: capturedLogger().logger, metrics })
  t.teardown(() => alerts.close())

  const stage = new Date(Date.now() - 2000).toISOString()
  const f = finding({ source: 'detector', id: 'secret-read-burst', severity: 'critical', message: '31 secret reads in 60s by one identity', details: { count: '31', baseline: '2.5', window: '60s', key: 'system:serviceaccount:payments:worker', 'threshold.max': '30' } })
  const started = performance.now()
  alerts.offer(f, event({ stageTimestamp: stage }))
  let found: GettableAlert | undefined
  while (!found && performance.now() - started < 3000) {
    found = (await am.alerts()).find((a) => a.labels.alertname === 'secret-read-burst')
    if (!found) await new Promise((r) => setTimeout(r, 10))
  }
  const elapsed = performance.now() - started
  t.ok(found, 'the alert is in Alertmanager')
  t.ok(elapsed < 1000, `visible through the API ${elapsed.toFixed(0)} ms after offer() (under 1000)`)
  t.same(found!.labels, {
    alertname: 'secret-read-burst',
    severity: 'critical',
    source: 'detector',
    node: 'cp-1',
    user: 'system:serviceaccount:payments:worker',
    namespace: 'payments',
    resource: 'secrets/db-password',
    auditrail: 'true',
  })
  t.same(found!.annotations, {
    summary: '31 secret reads in 60s by one identity',
    description: 'system:serviceaccount:payments:worker get secrets/db-password in namespace payments from 10.1.2.3 (node cp-1, detector secret-read-burst)',
    auditID: f.auditId,
    count: '31',
    baseline: '2.5',
    window: '60s',
    key: 'system:serviceaccount:payments:worker',
    threshold_max: '30',
  }, 'the message, the auditID and the detector\'s explanation')
  t.equal(Date.parse(found!.startsAt), Date.parse(stage), 'startsAt is the event\'s stageTimestamp')
  const endsIn = Date.parse(found!.endsAt) - Date.now()
  t.ok(endsIn > 4 * 60_000 && endsIn <= 5 * 60_000, `endsAt is about resolveTimeout (5m) ahead: ${endsIn} ms`)
  t.equal(found!.status.state, 'active')
  await alerts.idle()
  t.match(await metrics.registry.getSingleMetricAsString('auditrail_alerts_sent_total'), /auditrail_alerts_sent_total\{sink="alertmanager"\} 1/)
})

t.test('a group of alerts, a cluster-scoped resource, and a retry of the same alert update one Alertmanager alert', async (t) => {
  const am = await startAlertmanager(t.testdir())
  t.teardown(() => am.stop())
  const metrics = new AgentMetrics()
  const alerts = new AlertDispatcher({ config: alertConfig({ alertmanager: { url: am.url }, coolDown: '0s', minSeverity: 'info' }), node: 'cp-2', logger: capturedLogger().logger, metrics })
  t.teardown(() => alerts.close())
  for (let i = 0; i < 20; i++) alerts.offer(finding({ id: `rule-${i}`, severity: 'info' }), event({ objectRef: { resource: 'clusterrolebindings', name: 'admin-for-all', apiGroup: 'rbac.authorization.k8s.io' } }))
  await alerts.idle()
  const got = (await am.alerts()).filter((a) => a.labels.node === 'cp-2')
  t.equal(got.length, 20, 'every alert arrived')
  t.notOk('namespace' in got[0]!.labels, 'no empty namespace label for a cluster-scoped resource')
  t.equal(got[0]!.labels.resource, 'clusterrolebindings/admin-for-all')
  alerts.offer(finding({ id: 'rule-0', severity: 'info' }), event({ objectRef: { resource: 'clusterrolebindings', name: 'admin-for-all' } }))
  await alerts.idle()
  t.equal((await am.alerts()).filter((a) => a.labels.node === 'cp-2').length, 20, 'the same labels are the same alert to Alertmanager')
})
