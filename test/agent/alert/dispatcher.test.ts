// The alert path against real HTTP receivers on 127.0.0.1 (node:http): the
// webhook's schema, bearer token and HMAC signature; a sink that hangs, fails
// or is down never slows offer(); retries, drops, cool-down and the severity
// threshold are counted; secrets never reach the log.
import { createHmac, timingSafeEqual } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import t, { type Test } from 'tap'
import { AlertDispatcher } from '../../../agent/alert/dispatcher.ts'
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, WEBHOOK_SCHEMA } from '../../../agent/alert/webhook.ts'
import { AgentMetrics } from '../../../agent/observe/metrics.ts'
import { alertConfig, capturedLogger, event, finding, until } from './fixtures.ts'

interface Received {
  headers: IncomingMessage['headers']
  body: string
}
type Behaviour = (req: IncomingMessage, res: ServerResponse, body: string) => void

/** A webhook receiver: records every request; `script[i]` answers request i, else 200. */
async function receiver(t: Test, script: Behaviour[] = [], fallback?: Behaviour) {
  const received: Received[] = []
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    const body = Buffer.concat(chunks).toString('utf8')
    const behaviour = script[received.length] ?? fallback
    received.push({ headers: req.headers, body })
    if (behaviour) return behaviour(req, res, body)
    res.writeHead(200).end('ok')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()) }))
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/hooks/auditrail`, received }
}

const fail503: Behaviour = (_q, res) => res.writeHead(503).end('busy')
const hang: Behaviour = () => {}

async function value(metrics: AgentMetrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === name)
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l))
  return v?.value ?? 0
}

t.test('webhook: one JSON object per alert, the documented schema, bearer token and HMAC signature', async (t) => {
  const dir = t.testdir()
  writeFileSync(join(dir, 'token'), 'tok-7d1f0e9a\n')
  writeFileSync(join(dir, 'secret'), 'hmac-secret-55c2b1\n')
  const rx = await receiver(t)
  const log = capturedLogger('trace')
  const alerts = new AlertDispatcher({
    config: alertConfig({ webhook: { url: rx.url, bearerTokenFile: join(dir, 'token'), hmacSecretFile: join(dir, 'secret') } }),
    node: 'cp-1', logger: log.logger, metrics: new AgentMetrics(),
  })
  t.teardown(() => alerts.close())
  const f = finding({ severity: 'critical', details: { rule: 'secrets outside allow-list' } })
  const stage = '2026-11-25T10:00:00.123456Z'
  alerts.offer(f, event({ stageTimestamp: stage }))
  await alerts.idle()
  t.equal(rx.received.length, 1)
  const { headers, body } = rx.received[0]!
  t.equal(headers['content-type'], 'application/json')
  t.equal(headers.authorization, 'Bearer tok-7d1f0e9a', 'the token, trimmed of its newline')
  // What a receiver does: recompute the HMAC over timestamp "." body, compare in constant time, check the age.
  const timestamp = String(headers[TIMESTAMP_HEADER])
  t.ok(Math.abs(Date.now() / 1000 - Number(timestamp)) < 5, 'the timestamp is now (receivers reject old ones: replays)')
  const expected = Buffer.from(`sha256=${createHmac('sha256', 'hmac-secret-55c2b1').update(`${timestamp}.${body}`).digest('hex')}`)
  const got = Buffer.from(String(headers[SIGNATURE_HEADER]))
  t.ok(got.length === expected.length && timingSafeEqual(got, expected), 'the signature verifies')
  const alert = JSON.parse(body)
  t.same(alert, {
    schema: WEBHOOK_SCHEMA,
    alertId: alert.alertId,
    id: f.id,
    source: 'rule',
    severity: 'critical',
    message: f.message,
    details: { rule: 'secrets outside allow-list' },
    node: 'cp-1',
    auditID: f.auditId,
    eventTime: '2026-11-25T10:00:00.123Z',
    user: 'system:serviceaccount:payments:worker',
    namespace: 'payments',
    resource: 'secrets/db-password',
    verb: 'get',
    sourceIPs: ['10.1.2.3'],
    userAgent: 'kubectl/v1.31.0',
  })
  t.match(alert.alertId, /^[0-9a-f-]{36}$/)
  t.notMatch(log.text(), /tok-7d1f0e9a|hmac-secret-55c2b1/, 'neither secret is in the log, even at trace')
  t.notMatch(log.text(), /\/hooks\/auditrail/, 'nor the webhook\'s path (often a token itself)')
})

t.test('webhook format array: a group of alerts in one request; a rotated token is used without a restart', async (t) => {
  const dir = t.testdir()
  writeFileSync(join(dir, 'token'), 'first')
  let release: () => void = () => {}
  const gate = new Promise<void>((r) => { release = r })
  // The first request is held until the rest are queued, so they go out together.
  const rx = await receiver(t, [async (_q, res) => { await gate; res.writeHead(200).end() }])
  const alerts = new AlertDispatcher({ config: alertConfig({ webhook: { url: rx.url, format: 'array', bearerTokenFile: join(dir, 'token') }, maxAlertsPerRequest: 5, coolDown: '0s' }), node: 'n', logger: capturedLogger().logger, metrics: new AgentMetrics() })
  t.teardown(() => alerts.close())
  alerts.offer(finding({ id: 'a0' }), event())
  await until('the first request', () => rx.received.length === 1)
  for (let i = 1; i <= 7; i++) alerts.offer(finding({ id: `a${i}` }), event())
  writeFileSync(join(dir, 'token'), 'second')
  release()
  await alerts.idle()
  t.same(rx.received.map((r) => JSON.parse(r.body).map((a: { id: string }) => a.id)), [['a0'], ['a1', 'a2', 'a3', 'a4', 'a5'], ['a6', 'a7']], 'in order, at most maxAlertsPerRequest per request')
  t.same(rx.received.map((r) => r.headers.authorization), ['Bearer first', 'Bearer second', 'Bearer second'])
})

t.test('a hanging sink: offer() never waits, the full queue drops and counts, the other sink is not delayed', async (t) => {
  const hanging = await receiver(t, [], hang)
  const healthy = await receiver(t)
  const metrics = new AgentMetrics()
  const config = alertConfig({ alertmanager: { url: hanging.url.replace('/hooks/auditrail', ''), timeout: '30s' }, webhook: { url: healthy.url, format: 'array' }, queueSize: 50, coolDown: '0s' })
  const log = capturedLogger()
  const alerts = new AlertDispatcher({ config, node: 'n', logger: log.logger, metrics })
  // offer() is synchronous: the 5,000 offers run in one turn of the event loop, so the hanging sink cannot
  // have held any of them up (a wall-clock bound here only measured the machine's load).
  const returned = Array.from({ length: 5000 }, (_, i) => alerts.offer(finding({ id: `r${i % 7}` }), event()) as unknown)
  t.equal(returned.filter((r) => r !== undefined).length, 0, 'offer() returns nothing to wait for')
  t.equal(await value(metrics, 'auditrail_alerts_dropped_total', { sink: 'alertmanager', reason: 'queue_full' }), 5000 - 50, 'all but queueSize dropped for the hanging sink')
  t.equal(await value(metrics, 'auditrail_alert_queue_length', { sink: 'alertmanager' }), 50)
  await until('the healthy sink got what it could queue', async () => (await value(metrics, 'auditrail_alerts_sent_total', { sink: 'webhook' })) >= 50)
  t.equal(hanging.received.length, 1, 'one request in flight to the hanging sink, no pile-up')
  t.equal(log.lines().filter((l) => /queue holds/.test(l.msg)).length, 2, 'a full queue is logged once per interval per sink, not per alert')
  const closing = performance.now()
  await alerts.close(200)
  t.ok(performance.now() - closing < 1500, 'close() gives up on the hanging request after its deadline')
  t.equal(await value(metrics, 'auditrail_alerts_dropped_total', { sink: 'alertmanager', reason: 'closed' }), 50, 'what was left is counted as dropped on close')
})

t.test('retries: a sink failing 3 times then accepting gets every alert once it is back', async (t) => {
  const rx = await receiver(t, [fail503, (req) => req.socket.destroy(), fail503])
  const metrics = new AgentMetrics()
  const alerts = new AlertDispatcher({ config: alertConfig({ webhook: { url: rx.url, format: 'array' }, retry: { initialDelay: '10ms', maxDelay: '50ms' } }), node: 'n', logger: capturedLogger().logger, metrics })
  t.teardown(() => alerts.close())
  alerts.offer(finding({ id: 'one' }), event())
  await alerts.idle()
  t.equal(rx.received.length, 4)
  t.same(new Set(rx.received.map((r) => JSON.parse(r.body)[0].alertId)).size, 1, 'every attempt is the same alert (same alertId)')
  t.equal(await value(metrics, 'auditrail_alert_send_failures_total', { sink: 'webhook', reason: 'http_5xx' }), 2)
  t.equal(await value(metrics, 'auditrail_alert_send_failures_total', { sink: 'webhook', reason: 'transport' }), 1)
  t.equal(await value(metrics, 'auditrail_alerts_sent_total', { sink: 'webhook' }), 1)
  t.equal(await value(metrics, 'auditrail_alerts_dropped_total'), 0)
})

t.test('retries are bounded: out of attempts, or a 400 that will never succeed, is dropped and counted', async (t) => {
  const rx = await receiver(t, [], fail503)
  const metrics = new AgentMetrics()
  const log = capturedLogger()
  const alerts = new AlertDispatcher({ config: alertConfig({ webhook: { url: rx.url }, retry: { initialDelay: '5ms', maxDelay: '20ms', maxAttempts: 4 } }), node: 'n', logger: log.logger, metrics })
  t.teardown(() => alerts.close())
  alerts.offer(finding(), event())
  await alerts.idle()
  t.equal(rx.received.length, 4, 'maxAttempts requests')
  t.equal(await value(metrics, 'auditrail_alerts_dropped_total', { sink: 'webhook', reason: 'retries_exhausted' }), 1)
  t.match(log.lines().find((l) => l.level === 50)?.msg, /alerts dropped: not accepted after alert\.retry\.maxAttempts \(4\)/)

  const bad = await receiver(t, [], (_q, res) => res.writeHead(400).end('{"message":"bad alert"}'))
  const m2 = new AgentMetrics()
  const a2 = new AlertDispatcher({ config: alertConfig({ webhook: { url: bad.url } }), node: 'n', logger: capturedLogger().logger, metrics: m2 })
  t.teardown(() => a2.close())
  a2.offer(finding(), event())
  await a2.idle()
  t.equal(bad.received.length, 1, 'a 400 is not retried')
  t.equal(await value(m2, 'auditrail_alerts_dropped_total', { sink: 'webhook', reason: 'rejected' }), 1)
})

t.test('max age: alerts older than alert.retry.maxAge are dropped even with attempts left', async (t) => {
  const rx = await receiver(t, [], fail503)
  const metrics = new AgentMetrics()
  const alerts = new AlertDispatcher({ config: alertConfig({ webhook: { url: rx.url }, retry: { initialDelay: '50ms', maxDelay: '50ms', maxAttempts: 1000, maxAge: '300ms' } }), node: 'n', logger: capturedLogger().logger, metrics })
  t.teardown(() => alerts.close())
  const started = performance.now()
  alerts.offer(finding(), event())
  await alerts.idle()
  const took = performance.now() - started
  t.ok(took >= 300 && took < 1000, `given up after ${took.toFixed(0)} ms`)
  t.equal(await value(metrics, 'auditrail_alerts_dropped_total', { sink: 'webhook', reason: 'retries_exhausted' }), 1)
})

t.test('a sink that is down (connection refused) does not block, and alerts flow once it is up', async (t) => {
  const rx = await receiver(t)
  const port = Number(new URL(rx.url).port)
  // A port nobody listens on: take one, then close it.
  const probe = createServer()
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r))
  const deadPort = (probe.address() as { port: number }).port
  await new Promise<void>((r) => probe.close(() => r()))
  const metrics = new AgentMetrics()
  const alerts = new AlertDispatcher({ config: alertConfig({ webhook: { url: `http://127.0.0.1:${deadPort}/x`, format: 'array' }, alertmanager: { url: `http://127.0.0.1:${port}` }, retry: { initialDelay: '10ms', maxDelay: '10ms', maxAttempts: 3 } }), node: 'n', logger: capturedLogger().logger, metrics })
  t.teardown(() => alerts.close())
  const started = performance.now()
  for (let i = 0; i < 100; i++) alerts.offer(finding({ id: `d${i}` }), event())
  t.ok(performance.now() - started < 50, 'offering 100 alerts while a sink is down is immediate')
  await alerts.idle()
  t.equal(await value(metrics, 'auditrail_alerts_sent_total', { sink: 'alertmanager' }), 100, 'the healthy sink got them all')
  t.equal(await value(metrics, 'auditrail_alerts_dropped_total', { sink: 'webhook', reason: 'retries_exhausted' }), 100)
  t.ok(await value(metrics, 'auditrail_alert_send_failures_total', { sink: 'webhook', reason: 'transport' }) >= 3)
})

t.test('cool-down: the same finding for the same key, namespace and resource is one alert until it expires', async (t) => {
  const rx = await receiver(t)
  const metrics = new AgentMetrics()
  const alerts = new AlertDispatcher({ config: alertConfig({ webhook: { url: rx.url }, coolDown: '400ms' }), node: 'n', logger: capturedLogger().logger, metrics })
  t.teardown(() => alerts.close())
  const burst = (over = {}) => finding({ source: 'detector', id: 'forbidden-burst', details: { key: '10.9.9.9', count: '40' }, ...over })
  for (let i = 0; i < 10; i++) alerts.offer(burst(), event())
  alerts.offer(burst({ details: { key: '10.9.9.10', count: '40' } }), event())
  alerts.offer(burst(), event({ objectRef: { resource: 'secrets', namespace: 'other', name: 'db-password' } }))
  alerts.offer(finding({ id: 'another-rule' }), event())
  await alerts.idle()
  t.equal(rx.received.length, 4, 'one per (finding, key, namespace, resource)')
  t.equal(await value(metrics, 'auditrail_alerts_deduplicated_total'), 9)
  await new Promise((r) => setTimeout(r, 450))
  alerts.offer(burst(), event())
  await alerts.idle()
  t.equal(rx.received.length, 5, 'after the cool-down the same finding alerts again')
})

t.test('alerts follow the group: its opening and end always leave, its updates at most once per cool-down; Alertmanager resolves it at its end', async (t) => {
  const rx = await receiver(t)
  const metrics = new AgentMetrics()
  const alerts = new AlertDispatcher({ config: alertConfig({ webhook: { url: rx.url }, coolDown: '400ms' }), node: 'n', logger: capturedLogger().logger, metrics })
  t.teardown(() => alerts.close())
  const of = (group: string, groupState: string, groupCount: number) => finding({ id: 'secret-read-by-human', severity: 'high', details: { group, groupState, groupCount: String(groupCount) } })
  alerts.offer(of('g1', 'open', 1), event())
  for (let i = 2; i <= 50; i++) alerts.offer(of('g1', 'update', i), event())
  alerts.offer(of('g2', 'open', 1), event())
  await alerts.idle()
  const states = () => rx.received.map((r) => { const b = JSON.parse(r.body); return `${b.details.group}:${b.details.groupState}:${b.details.groupCount}` })
  t.same(states(), ['g1:open:1', 'g2:open:1'], 'one alert per group opened; updates within the cool-down wait')
  await new Promise((r) => setTimeout(r, 450))
  alerts.offer(of('g1', 'update', 51), event())
  alerts.offer(of('g1', 'update', 52), event())
  alerts.offer(of('g1', 'end', 52), event())
  await alerts.idle()
  t.same(states().slice(2), ['g1:update:51', 'g1:end:52'], 'one update after the cool-down, and the end even within it')
  t.equal(await value(metrics, 'auditrail_alerts_deduplicated_total'), 50, '49 updates in the first cool-down, 1 in the second')
  const { toPostableAlert } = await import('../../../agent/alert/alertmanager.ts')
  const { buildAlert } = await import('../../../agent/alert/alert.ts')
  const now = Date.now()
  const ended = toPostableAlert(buildAlert(of('g1', 'end', 52), event(), 'n', 0), 300_000, now)
  const open = toPostableAlert(buildAlert(of('g1', 'open', 1), event(), 'n', 0), 300_000, now)
  t.equal(ended.labels.group, 'g1')
  t.same(ended.labels, open.labels, 'opening and end are one alert to Alertmanager (the same labels)')
  t.ok(Date.parse(ended.endsAt) <= now && Date.parse(open.endsAt) > now, 'the end resolves it; the opening fires')
})

t.test('Alertmanager: a group\'s alert does not resolve by timeout between two updates (endsAt adds the cool-down)', async (t) => {
  const rx = await receiver(t)
  const alerts = new AlertDispatcher({ config: alertConfig({ alertmanager: { url: rx.url.replace('/hooks/auditrail', ''), resolveTimeout: '5m' }, coolDown: '10m' }), node: 'n', logger: capturedLogger().logger, metrics: new AgentMetrics() })
  t.teardown(() => alerts.close())
  const sent = Date.now()
  alerts.offer(finding({ details: { group: 'g1', groupState: 'open', groupCount: '1' } }), event())
  alerts.offer(finding({ id: 'ungrouped' }), event())
  await alerts.idle()
  const posted = rx.received.flatMap((r) => JSON.parse(r.body) as { labels: Record<string, string>; endsAt: string }[])
  const endsIn = (name: string) => Date.parse(posted.find((a) => a.labels.alertname === name)!.endsAt) - sent
  t.ok(endsIn('secret-read-by-unexpected-user') >= 15 * 60_000, `the group's alert lasts resolveTimeout + coolDown (${Math.round(endsIn('secret-read-by-unexpected-user') / 60_000)} min)`)
  t.ok(endsIn('ungrouped') < 6 * 60_000, 'a finding outside any group: resolveTimeout alone')
})

t.test('cool-down state is bounded by alert.coolDownMaxKeys', async (t) => {
  const rx = await receiver(t)
  const alerts = new AlertDispatcher({ config: alertConfig({ webhook: { url: rx.url, format: 'array' }, coolDownMaxKeys: 100, maxAlertsPerRequest: 1000, queueSize: 100_000 }), node: 'n', logger: capturedLogger().logger, metrics: new AgentMetrics() })
  t.teardown(() => alerts.close())
  for (let i = 0; i < 5000; i++) alerts.offer(finding(), event({ user: { username: `u${i}` } }))
  for (let i = 0; i < 5; i++) alerts.offer(finding(), event({ user: { username: `u${i}` } }))
  await alerts.idle()
  const sent = rx.received.reduce((n, r) => n + JSON.parse(r.body).length, 0)
  t.equal(sent, 5005, 'the oldest keys were evicted, so their repeats alert again: memory stays bounded')
})

t.test('severity threshold: below alert.minSeverity nothing is sent', async (t) => {
  const rx = await receiver(t)
  const alerts = new AlertDispatcher({ config: alertConfig({ webhook: { url: rx.url }, minSeverity: 'high', coolDown: '0s' }), node: 'n', logger: capturedLogger().logger, metrics: new AgentMetrics() })
  t.teardown(() => alerts.close())
  for (const severity of ['info', 'low', 'medium', 'high', 'critical'] as const) alerts.offer(finding({ id: severity, severity }), event())
  await alerts.idle()
  t.same(rx.received.map((r) => JSON.parse(r.body).id), ['high', 'critical'])
})

t.test('offer() never throws into the reading path, whatever the event holds', async (t) => {
  const rx = await receiver(t)
  const log = capturedLogger()
  const alerts = new AlertDispatcher({ config: alertConfig({ webhook: { url: rx.url }, coolDown: '0s' }), node: 'n', logger: log.logger, metrics: new AgentMetrics() })
  t.teardown(() => alerts.close())
  const odd = { auditID: 'x', stage: 'ResponseComplete', verb: 'get', user: {}, stageTimestamp: 'not a time', objectRef: {} } as never
  t.doesNotThrow(() => alerts.offer(finding(), odd))
  t.doesNotThrow(() => alerts.offer(finding(), null as never), 'not even for a null event')
  await alerts.idle()
  t.equal(rx.received.length, 1, 'the odd event still alerts (time: now)')
  t.match(log.lines().find((l) => l.level === 50)?.msg, /could not queue an alert \(reading goes on\)/)
})

t.test('logs: no secret at any level, no event contents above debug', async (t) => {
  const dir = t.testdir()
  writeFileSync(join(dir, 'password'), 'pw-3b0b9c21')
  writeFileSync(join(dir, 'token'), 'tok-e2a66d10')
  writeFileSync(join(dir, 'secret'), 'hmac-4f00d1ab')
  const failing = await receiver(t, [], (req, res) => res.writeHead(401).end(`denied ${req.headers.authorization}`))
  const log = capturedLogger('trace')
  const alerts = new AlertDispatcher({
    config: alertConfig({
      alertmanager: { url: failing.url.replace('/hooks/auditrail', ''), basicAuth: { username: 'agent', passwordFile: join(dir, 'password') } },
      webhook: { url: failing.url, bearerTokenFile: join(dir, 'token'), hmacSecretFile: join(dir, 'secret') },
      retry: { initialDelay: '5ms', maxDelay: '5ms', maxAttempts: 3 },
    }),
    node: 'n', logger: log.logger, metrics: new AgentMetrics(),
  })
  t.teardown(() => alerts.close())
  alerts.offer(finding(), event({ user: { username: 'mallory@corp.example' }, sourceIPs: ['203.0.113.77'] }))
  await alerts.idle()
  const sent = failing.received.map((r) => r.headers.authorization)
  t.ok(sent.includes(`Basic ${Buffer.from('agent:pw-3b0b9c21').toString('base64')}`), 'Alertmanager gets basic auth from the password file')
  t.ok(sent.includes('Bearer tok-e2a66d10'), 'the webhook gets its bearer token')
  const text = log.text()
  t.match(text, /answered HTTP 401/, 'the failures are logged')
  t.notMatch(text, /pw-3b0b9c21|tok-e2a66d10|hmac-4f00d1ab/, 'no secret, at any level')
  t.notMatch(text, new RegExp(Buffer.from('agent:pw-3b0b9c21').toString('base64')), 'not even base64-encoded (the receiver echoed the header)')
  const aboveDebug = log.lines().filter((l) => l.level > 20).map((l) => JSON.stringify(l)).join('\n')
  t.notMatch(aboveDebug, /mallory|203\.0\.113\.77|db-password/, 'no event contents above debug')
})
