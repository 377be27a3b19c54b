// The responder's bounds, in dry run (no request is made but the identity lookup, which fails here
// and is retried later): a full queue drops and reports at once, the rate limit holds the rest, the
// same object is answered once, and an action that does not fit the object is passed over.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import type { AuditEvent } from '../../../agent/audit/event.ts'
import { loadAgentConfig, type RespondConfig } from '../../../agent/config.ts'
import type { RuleFinding } from '../../../agent/guard/rule-set.ts'
import { AgentMetrics } from '../../../agent/observe/metrics.ts'
import { Responder } from '../../../agent/respond/responder.ts'
import { freePort } from '../../e2e/processes.ts'

const event = (name: string, resource = 'pods'): AuditEvent => ({ auditID: `id-${name}`, stage: 'ResponseComplete', verb: 'create', user: { username: 'mallory' }, objectRef: { resource, namespace: 'apps', name, apiVersion: 'v1' }, responseStatus: { code: 201 }, stageTimestamp: new Date().toISOString() })
const finding = (ev: AuditEvent): RuleFinding => ({ source: 'rule', id: 'privileged-container', severity: 'high', message: '', auditId: ev.auditID, details: {} })

async function responder(t: Test, patch: Partial<RespondConfig>) {
  const dir = t.testdir()
  writeFileSync(join(dir, 'token'), 'not-a-real-token\n')
  // Nothing listens there: the identity lookup fails, as it may at start, and dry run goes on regardless.
  const url = `https://127.0.0.1:${await freePort()}`
  const config: RespondConfig = {
    ...loadAgentConfig({ overrides: { node: 'n', 'collector.url': 'https://c:1' }, env: {} }).respond,
    enabled: true,
    policies: [{ rules: ['privileged-container'], action: 'delete-pod' }],
    apiServer: { url, caFile: '', tokenFile: join(dir, 'token'), timeoutMs: 1000 },
    ...patch,
  }
  const metrics = new AgentMetrics()
  const r = new Responder({ config, node: 'n', logger: pino({ level: 'silent' }), metrics })
  r.start()
  t.teardown(() => r.close())
  const count = async (labels: Record<string, string>, metric: 'responses' | 'responsesSkipped' = 'responses') =>
    (await metrics[metric].get()).values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0)
  const consider = (ev: AuditEvent) => {
    const findings = [finding(ev)]
    r.consider(ev, findings)
    return findings.slice(1)
  }
  return { r, metrics, count, consider }
}

t.test('a full queue drops, reports and counts at once; the rate limit holds the rest; closing drops what waits', async (t) => {
  const { r, metrics, count, consider } = await responder(t, { queueSize: 2, rateLimit: { perMinute: 1, burst: 1 } })
  const added = ['p1', 'p2', 'p3', 'p4', 'p5'].map((name) => consider(event(name)))
  t.same(added.map((list) => list.map((f) => f.details.outcome)), [[], [], ['dropped'], ['dropped'], ['dropped']], 'two queued, three dropped, each with a finding on its own event')
  t.match(added[2]![0], { id: 'responder.pod-deleted', severity: 'high', auditId: 'id-p3', details: { causeRule: 'privileged-container', target: 'pods apps/p3' } })
  t.match(added[2]![0]!.message, /^did not delete pods apps\/p3: the response queue is full/)
  await new Promise((resolve) => setImmediate(resolve))
  const done = r.takeFindings()
  t.same(done.map((d) => [d.finding.details.outcome, d.finding.details.target, d.cause.auditID]), [['dry_run', 'pods apps/p1', 'id-p1']], 'the burst (1) lets one through; the next waits a minute')
  t.same(r.takeFindings(), [], 'taken once')
  t.equal((await metrics.responseQueueLength.get()).values[0]!.value, 1, 'one waits for the rate limit')
  t.same([await count({ outcome: 'dry_run' }), await count({ outcome: 'dropped' })], [1, 3])
  await r.close()
  t.equal(await count({ outcome: 'dropped' }), 4, 'stopping drops the one still waiting, counted')
})

t.test('the same object is answered once within the dedup window; an action that does not fit is passed over', async (t) => {
  const { count, consider, r } = await responder(t, {})
  consider(event('p1'))
  consider(event('p1'))
  consider(event('d1', 'deployments'))
  await new Promise((resolve) => setImmediate(resolve))
  t.same(r.takeFindings().map((d) => d.finding.details.target), ['pods apps/p1'])
  t.same([await count({ reason: 'duplicate' }, 'responsesSkipped'), await count({ reason: 'not_applicable' }, 'responsesSkipped')], [1, 1])
})

t.test('an event whose object name cannot be a path is passed over, not thrown on the reading path', async (t) => {
  const { count, consider } = await responder(t, {})
  t.doesNotThrow(() => consider(event('bad\ud800name')))
  t.equal(await count({ reason: 'not_applicable' }, 'responsesSkipped'), 1)
})
