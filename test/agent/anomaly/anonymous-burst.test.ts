// anonymous-burst on events as kube-apiserver v1.26 writes them: an anonymous request
// refused by RBAC is a ResponseComplete event with code 403, user system:anonymous.
import t from 'tap'
import { decodeAuditLine, type AuditEvent } from '../../../agent/audit/event.ts'
import { Detectors } from '../../../agent/anomaly/detectors.ts'
import { builtinFindings, times } from './events.ts'

const ID = 'anonymous-burst'
const T0 = Date.parse('2026-11-25T10:00:00Z')
let serial = 0

function anonymous(ms: number, uri: string, o: { ip?: string; code?: number } = {}): AuditEvent {
  const time = new Date(T0 + ms).toISOString().replace('Z', '123Z')
  const code = o.code ?? 403
  const path = uri.split('?')[0]!
  const json = {
    kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'Metadata', auditID: `7e3a1c2d-0000-4000-8000-${(++serial).toString(16).padStart(12, '0')}`,
    stage: 'ResponseComplete', requestURI: uri, verb: 'get', user: { username: 'system:anonymous', groups: ['system:unauthenticated'] },
    sourceIPs: [o.ip ?? '203.0.113.9'], userAgent: 'Go-http-client/1.1',
    ...(path.startsWith('/api/') ? { objectRef: { resource: path.split('/').at(-1), apiVersion: 'v1' } } : {}),
    responseStatus: code === 403 ? { metadata: {}, status: 'Failure', message: `forbidden: User "system:anonymous" cannot get path "${path}"`, reason: 'Forbidden', details: {}, code } : { metadata: {}, code },
    requestReceivedTimestamp: time, stageTimestamp: time,
    annotations: { 'authorization.k8s.io/decision': code === 403 ? 'forbid' : 'allow', 'authorization.k8s.io/reason': '' },
  }
  const decoded = decodeAuditLine(Buffer.from(JSON.stringify(json)))
  if (!('event' in decoded)) throw new Error(decoded.unparsed)
  return decoded.event
}

const SCAN = ['/api/v1/secrets', '/api/v1/pods', '/apis', '/metrics', '/logs', '/api/v1/nodes', '/apis/apps/v1/deployments', '/api/v1/configmaps', '/debug/pprof/', '/api/v1/namespaces', '/api/v1/serviceaccounts']
const run = (events: AuditEvent[]) => builtinFindings(ID, events)

t.test('fires on a scanner walking the API', async (t) => {
  const scan = run(times(11, 3000, (ms, i) => anonymous(ms, SCAN[i]!)))
  t.equal(scan.length, 1, '11 refused paths from one address in half a minute')
  t.equal(scan[0]?.severity, 'high')
  t.equal(run(times(11, 5000, (ms, i) => anonymous(ms, '/api/v1/namespaces/kube-system/secrets', { code: i % 2 === 0 ? 403 : 200 }))).length, 1, 'allowed ones count too (they are already high one by one)')
})

t.test('stays quiet below the threshold, on health checks and on many addresses once each', async (t) => {
  t.equal(run(times(10, 3000, (ms, i) => anonymous(ms, SCAN[i]!))).length, 0, '10 is not more than 10')
  t.equal(run(times(11, 10_000, (ms, i) => anonymous(ms, SCAN[i]!))).length, 0, '11 over more than a minute')
  const probes = ['/healthz', '/livez', '/readyz?verbose', '/version', '/openapi/v2', '/openapi/v3/apis/apps/v1', '/.well-known/openid-configuration', '/openid/v1/jwks']
  t.equal(run(times(120, 500, (ms, i) => anonymous(ms, probes[i % probes.length]!, { code: i % 3 === 0 ? 403 : 200 }))).length, 0, 'load balancer probes and OIDC discovery, refused or not')
  t.equal(run(times(30, 1000, (ms, i) => anonymous(ms, SCAN[i % SCAN.length]!, { ip: `198.51.100.${i}` }))).length, 0, 'thirty addresses once each')
})

t.test('its group: one incident per address while the scan goes on', async (t) => {
  const group = new Detectors({ builtin: true, dirs: [] }).groupOf(ID)
  t.equal(group?.by, 'key')
  t.equal(group?.quiet, true)
  t.equal(group?.windowMs, 10 * 60_000)
})
