// secret-access-denied-burst on events as kube-apiserver v1.26 writes them: a refused
// bearer token is one ResponseStarted event with code 401 and "user":{}; a missing
// secret is a 404 at ResponseComplete, a refused one a 403.
import t from 'tap'
import { decodeAuditLine, type AuditEvent } from '../../../agent/audit/event.ts'
import { Detectors } from '../../../agent/anomaly/detectors.ts'
import { builtinFindings, times } from './events.ts'

const ID = 'secret-access-denied-burst'
const T0 = Date.parse('2026-11-25T10:00:00Z')
const REASONS: Record<number, [string, (name: string) => string]> = {
  401: ['Unauthorized', () => 'Unauthorized'],
  403: ['Forbidden', (name) => `secrets "${name}" is forbidden: User cannot get resource "secrets" in API group "" in the namespace "prod"`],
  404: ['NotFound', (name) => `secrets "${name}" not found`],
}
let serial = 0

function secretGet(ms: number, code: 401 | 403 | 404, o: { user?: string; ip?: string; name?: string; resource?: string } = {}): AuditEvent {
  const name = o.name ?? `db-password-${serial}`
  const resource = o.resource ?? 'secrets'
  const time = new Date(T0 + ms).toISOString().replace('Z', '123Z')
  const [reason, message] = REASONS[code]!
  const user = code === 401 ? {} : { username: o.user ?? 'system:serviceaccount:web:frontend', uid: '0d8f7a1e-frontend', groups: ['system:serviceaccounts', 'system:serviceaccounts:web', 'system:authenticated'] }
  const json = {
    kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'Metadata', auditID: `9a1b2c3d-0000-4000-8000-${(++serial).toString(16).padStart(12, '0')}`,
    stage: code === 401 ? 'ResponseStarted' : 'ResponseComplete', requestURI: `/api/v1/namespaces/prod/${resource}/${name}`, verb: 'get', user,
    sourceIPs: [o.ip ?? '10.244.3.17'], userAgent: 'curl/8.5.0', objectRef: { resource, namespace: 'prod', name, apiVersion: 'v1' },
    responseStatus: { metadata: {}, status: 'Failure', message: message(name), reason, ...(code === 401 ? {} : { details: { name, kind: resource } }), code },
    requestReceivedTimestamp: time, stageTimestamp: time,
    ...(code === 401 ? {} : { annotations: { 'authorization.k8s.io/decision': code === 403 ? 'forbid' : 'allow', 'authorization.k8s.io/reason': '' } }),
  }
  const decoded = decodeAuditLine(Buffer.from(JSON.stringify(json)))
  if (!('event' in decoded)) throw new Error(decoded.unparsed)
  return decoded.event
}

const run = (events: AuditEvent[]) => builtinFindings(ID, events)

t.test('fires on name enumeration and token probing', async (t) => {
  const sa404 = run(times(11, 10_000, (ms) => secretGet(ms, 404)))
  t.equal(sa404.length, 1, 'a service account asking for 11 secrets that do not exist in 2 minutes')
  t.match(sa404[0]?.message, /system:serviceaccount:web:frontend/)
  t.equal(run(times(11, 5_000, (ms) => secretGet(ms, 401, { ip: '203.0.113.50' }))).length, 1, 'a bad token tried 11 times from one address (no user: keyed by the address)')
  t.equal(run(times(11, 20_000, (ms, i) => secretGet(ms, i % 2 === 0 ? 403 : 404, { user: 'mallory@example.com', ip: '198.51.100.7' }))).length, 1, 'a person\'s 403s and 404s count together')
  t.equal(run(times(11, 10_000, (ms) => secretGet(ms, 403, { user: 'system:node:worker-1' }))).length, 1, 'a node refused secrets of pods not on it (the node authorizer) is not excepted')
  const long = run(times(40, 10_000, (ms) => secretGet(ms, 404)))
  t.equal(long.length, 30, '40 over six and a half minutes: every event past the threshold is a finding of the burst')
  t.same([...new Set(long.map((f) => f.details.key))], ['user=system:serviceaccount:web:frontend,sourceIP=10.244.3.17'], 'all of one key, so one group')
})

t.test('stays quiet below the threshold, outside the window and on what is normal', async (t) => {
  t.equal(run(times(10, 10_000, (ms) => secretGet(ms, 404))).length, 0, '10 is not more than 10')
  t.equal(run(times(11, 40_000, (ms) => secretGet(ms, 404))).length, 0, '11 over more than five minutes')
  t.equal(run(times(30, 10_000, (ms) => secretGet(ms, 404, { user: 'system:node:worker-1', name: 'tls-cert' }))).length, 0, 'a kubelet retrying a secret its pod mounts that is not there yet')
  t.equal(run(times(11, 10_000, (ms) => secretGet(ms, 404, { resource: 'configmaps' }))).length, 0, 'config maps, not secrets')
  t.equal(run(times(11, 10_000, (ms, i) => secretGet(ms, 404, { user: `system:serviceaccount:web:job-${i}` }))).length, 0, 'eleven principals once each')
})

t.test('its group: one incident per principal and address while the probing goes on', async (t) => {
  const group = new Detectors({ builtin: true, dirs: [] }).groupOf(ID)
  t.equal(group?.by, 'key')
  t.equal(group?.quiet, true)
  t.equal(group?.windowMs, 15 * 60_000)
})
