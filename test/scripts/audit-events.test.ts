import { isUtf8 } from 'node:buffer'
import t from 'tap'
import { decodeAuditLine } from '../../agent/audit/event.ts'
import { createAuditEventGenerator } from '../../scripts/audit-events.ts'

const START = Date.UTC(2026, 10, 25, 8, 0, 0)
const N = 20_000
const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const MICRO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/
const STAGES = new Set(['RequestReceived', 'ResponseStarted', 'ResponseComplete'])

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Ev = any

const generated = (seed: number, n: number) => {
  const g = createAuditEventGenerator({ seed, startTimeMs: START })
  return Array.from({ length: n }, () => g.next())
}
const lines = generated(42, N)
const events: Ev[] = lines.map((l) => JSON.parse(l))
const micros = (ts: string) => Date.parse(ts) * 1000 + Number(ts.slice(23, 26))

t.test('the same seed gives the same log; another seed another; bad lines do not disturb the sequence', async (t) => {
  t.same(generated(42, 3000), lines.slice(0, 3000))
  t.notSame(generated(43, 100), lines.slice(0, 100))
  const g = createAuditEventGenerator({ seed: 42, startTimeMs: START })
  const mixed = Array.from({ length: 200 }, (_, i) => {
    if (i % 50 === 0) g.badLine('not-json')
    return g.next()
  })
  t.same(mixed, lines.slice(0, 200))
})

t.test('every line is one audit.k8s.io/v1 Event with the fields the apiserver always writes', async (t) => {
  let bad = 0
  const fail = (why: string, e: Ev) => {
    if (bad++ < 5) t.fail(`${why}: ${JSON.stringify(e).slice(0, 300)}`)
  }
  for (let i = 0; i < N; i++) {
    const e = events[i]
    const line = lines[i]!
    if (line.includes('\n')) fail('newline inside a line', e)
    if (/[<>&]/.test(line)) fail('<, > and & must be escaped as Go does', e)
    if (e.kind !== 'Event' || e.apiVersion !== 'audit.k8s.io/v1') fail('kind/apiVersion', e)
    if (e.level !== 'Metadata' && e.level !== 'RequestResponse') fail('level', e)
    if (!UUID4.test(e.auditID)) fail('auditID is not a v4 UUID', e)
    if (!STAGES.has(e.stage)) fail('stage', e)
    if (typeof e.requestURI !== 'string' || !e.requestURI.startsWith('/')) fail('requestURI', e)
    if (typeof e.verb !== 'string' || typeof e.user !== 'object') fail('verb/user', e)
    if (!Array.isArray(e.sourceIPs) || e.sourceIPs.length === 0 || typeof e.userAgent !== 'string') fail('sourceIPs/userAgent', e)
    if (!MICRO.test(e.requestReceivedTimestamp) || !MICRO.test(e.stageTimestamp)) fail('timestamps are RFC 3339 with microseconds', e)
    if (micros(e.stageTimestamp) < micros(e.requestReceivedTimestamp)) fail('stage before the request was received', e)
    if (e.stage === 'RequestReceived' && (e.responseStatus || e.responseObject || e.requestObject || e.annotations)) fail('RequestReceived carries only the request line', e)
    if (e.stage !== 'RequestReceived' && typeof e.responseStatus?.code !== 'number') fail('a response stage without a code', e)
    if (e.level === 'Metadata' && (e.requestObject || e.responseObject)) fail('bodies at Metadata level', e)
  }
  t.equal(bad, 0, 'no malformed events')
  t.ok(lines.every((l) => 'event' in decodeAuditLine(Buffer.from(l))), "the agent's decoder takes every line as an event")
  t.same(Object.keys(events.find((e) => e.responseObject)!), ['kind', 'apiVersion', 'level', 'auditID', 'stage', 'requestURI', 'verb', 'user', 'sourceIPs', 'userAgent', 'objectRef', 'responseStatus', 'requestObject', 'responseObject', 'requestReceivedTimestamp', 'stageTimestamp', 'annotations'].filter((k) => k in events.find((e) => e.responseObject)!), 'keys in the Go struct order')
})

t.test('each request logs RequestReceived before its ResponseComplete; lines are not in time order', async (t) => {
  const seen = new Map<string, string[]>()
  for (const e of events) seen.set(e.auditID, [...(seen.get(e.auditID) ?? []), e.stage])
  const complete = [...seen.values()].filter((s) => s.includes('ResponseComplete'))
  t.ok(complete.length > N / 3, `${complete.length} completed requests`)
  t.ok(complete.every((s) => s[0] === 'RequestReceived' && s.at(-1) === 'ResponseComplete'), 'RequestReceived first, ResponseComplete last')
  t.ok([...seen.values()].some((s) => s.join() === 'RequestReceived,ResponseStarted,ResponseComplete'), 'streams (watch, exec) also log ResponseStarted')
  let backwards = 0
  for (let i = 1; i < N; i++) if (micros(events[i].stageTimestamp) < micros(events[i - 1].stageTimestamp)) backwards++
  t.ok(backwards > 0, `${backwards} lines earlier than the line before them`)
  const stages = (s: string) => events.filter((e) => e.stage === s).length / N
  t.ok(stages('RequestReceived') > 0.45 && stages('RequestReceived') < 0.55, 'about half the lines are RequestReceived, as measured')
})

t.test('the mix holds every kind of traffic a cluster produces', async (t) => {
  const has = (what: string, f: (e: Ev) => boolean) => t.ok(events.some(f), what)
  const ref = (e: Ev, resource: string, subresource?: string) => e.objectRef?.resource === resource && e.objectRef?.subresource === subresource
  const complete = (e: Ev) => e.stage === 'ResponseComplete'
  has('node lease updates by kubelets', (e) => ref(e, 'leases') && e.verb === 'update' && e.user.username.startsWith('system:node:'))
  has('leader-election leases by kube-controller-manager', (e) => ref(e, 'leases') && e.user.username === 'system:kube-controller-manager')
  has('leader-election leases by kube-scheduler', (e) => ref(e, 'leases') && e.user.username === 'system:kube-scheduler')
  for (const verb of ['get', 'list', 'watch']) has(`${verb} by controllers`, (e) => e.verb === verb && e.user.username?.startsWith('system:serviceaccount:kube-system:'))
  for (const verb of ['get', 'watch']) has(`${verb} by kubelets`, (e) => e.verb === verb && e.user.username?.startsWith('system:node:'))
  for (const verb of ['create', 'patch', 'delete']) has(`pod ${verb}`, (e) => complete(e) && ref(e, 'pods') && e.verb === verb && e.responseObject?.kind === 'Pod')
  has('pod status updates', (e) => ref(e, 'pods', 'status'))
  has('deployments', (e) => complete(e) && ref(e, 'deployments') && e.responseObject?.kind === 'Deployment')
  has('replicasets', (e) => ref(e, 'replicasets'))
  has('configmaps', (e) => ref(e, 'configmaps') && e.verb === 'update')
  has('events', (e) => ref(e, 'events') && e.verb === 'create')
  for (const r of ['roles', 'clusterroles', 'rolebindings', 'clusterrolebindings']) has(`RBAC ${r}`, (e) => ref(e, r) && e.objectRef.apiGroup === 'rbac.authorization.k8s.io')
  has('a cluster-admin binding', (e) => complete(e) && ref(e, 'clusterrolebindings') && e.verb === 'create' && e.requestObject?.roleRef?.name === 'cluster-admin')
  has('a wildcard role', (e) => complete(e) && e.requestObject?.rules?.some((r: Ev) => r.verbs.includes('*') && r.resources.includes('*')))
  const secretData = (e: Ev) => (e.responseObject?.kind === 'SecretList' ? e.responseObject.items : [e.responseObject]).flatMap((s: Ev) => Object.values(s?.data ?? {}))
  for (const verb of ['get', 'list']) {
    has(`secrets ${verb} at RequestResponse with base64 data`, (e) => {
      const data = complete(e) && ref(e, 'secrets') && e.verb === verb && e.level === 'RequestResponse' ? secretData(e) : []
      return data.length > 0 && data.every((d: unknown) => typeof d === 'string' && Buffer.from(d, 'base64').toString('base64') === d)
    })
  }
  has('exec into a pod by a person', (e) => ref(e, 'pods', 'exec') && e.user.username.endsWith('@example.com'))
  has('TokenRequests with a token', (e) => complete(e) && ref(e, 'serviceaccounts', 'token') && e.responseObject?.kind === 'TokenRequest' && e.responseObject.status.token.length > 100)
  has('a privileged pod create', (e) => complete(e) && ref(e, 'pods') && e.verb === 'create' && e.requestObject?.spec?.containers?.some((c: Ev) => c.securityContext?.privileged === true) && e.requestObject.spec.hostPID === true)
  has('network policies', (e) => ref(e, 'networkpolicies') && e.objectRef.apiGroup === 'networking.k8s.io')
  has('403 with a forbid decision', (e) => e.responseStatus?.code === 403 && e.responseStatus.reason === 'Forbidden' && e.annotations?.['authorization.k8s.io/decision'] === 'forbid')
  has('allowed requests with an RBAC reason', (e) => e.annotations?.['authorization.k8s.io/decision'] === 'allow' && e.annotations['authorization.k8s.io/reason'].startsWith('RBAC: allowed by'))
  has('anonymous requests', (e) => e.user.username === 'system:anonymous' && e.user.groups?.includes('system:unauthenticated'))
  has('a bad token: one ResponseStarted with code 401 and an empty user', (e) => e.stage === 'ResponseStarted' && e.responseStatus?.code === 401 && Object.keys(e.user).length === 0)
  has('pod security admission annotations', (e) => e.annotations?.['pod-security.kubernetes.io/enforce-policy'] === 'privileged:latest')
  const share = (f: (e: Ev) => boolean) => events.filter(f).length / N
  t.ok(share((e) => ref(e, 'leases')) > 0.15, 'leases are the largest share, as in a quiet production cluster')
  t.ok(share((e) => e.user.username?.endsWith('@example.com')) < 0.15, 'people are a small share')
})

t.test('line sizes follow the real apiserver (median 655 B, p99 6.3 KB, some tens of KB)', async (t) => {
  const sizes = lines.map((l) => Buffer.byteLength(l) + 1).sort((a, b) => a - b)
  const q = (p: number) => sizes[Math.floor(p * (sizes.length - 1))]!
  t.ok(q(0) >= 350, `smallest ${q(0)} B`)
  t.ok(q(0.5) > 400 && q(0.5) < 1500, `median ${q(0.5)} B`)
  t.ok(q(0.9) > 1500 && q(0.9) < 4000, `p90 ${q(0.9)} B (measured 2,589)`)
  t.ok(q(0.99) > 4000 && q(0.99) < 10_000, `p99 ${q(0.99)} B (measured 6,340)`)
  t.ok(sizes.filter((s) => s > 10_000).length >= 3, 'some lines are over 10 KB')
  const mean = sizes.reduce((a, b) => a + b, 0) / sizes.length
  t.ok(mean > 900 && mean < 2000, `mean ${Math.round(mean)} B (measured 1,345)`)
})

t.test('the clock: virtual from startTimeMs, never behind the time given to next()', async (t) => {
  const g = createAuditEventGenerator({ seed: 1, startTimeMs: START })
  const first = JSON.parse(g.next())
  t.ok(Math.abs(Date.parse(first.requestReceivedTimestamp) - START) < 1000, first.requestReceivedTimestamp)
  const later = START + 3_600_000
  const received = Array.from({ length: 300 }, () => JSON.parse(g.next(later))).filter((e) => e.stage === 'RequestReceived')
  t.ok(received.length > 0 && received.every((e) => Date.parse(e.requestReceivedTimestamp) >= later), 'new requests arrive no earlier than now')
  t.throws(() => createAuditEventGenerator({ seed: 1.5 }), /seed/)
  t.throws(() => createAuditEventGenerator({ seed: 1, nodeCount: 0 }), /nodeCount/)
  t.throws(() => createAuditEventGenerator({ seed: 1, maxEventBytes: 100 }), /maxEventBytes/)
})

t.test('bad lines, only when asked', async (t) => {
  const g = createAuditEventGenerator({ seed: 9 })
  const notJson = g.badLine('not-json')
  t.throws(() => JSON.parse(notJson.toString()))
  t.notOk(notJson.includes(10), 'no newline inside')
  const invalid = g.badLine('invalid-utf8')
  t.notOk(isUtf8(invalid), 'not UTF-8')
  t.notOk(invalid.includes(10), 'no newline inside')
  const big = g.badLine('oversize')
  t.equal(big.length, 5 * 1024 * 1024, 'default 5 MiB')
  t.equal(JSON.parse(big.toString()).kind, 'Event', 'a valid event, only too big')
  t.equal(g.badLine('oversize', 100_000).length, 100_000)
  t.throws(() => g.badLine('oversize', 10), /at least/)
  t.same([decodeAuditLine(notJson), decodeAuditLine(invalid)], [{ unparsed: 'not JSON' }, { unparsed: 'invalid UTF-8' }], "the agent's decoder marks them unparsed")
})
