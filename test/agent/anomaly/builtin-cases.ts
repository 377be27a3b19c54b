// Each built-in detector: a stream that fires it and one that stays just below or outside it.
// Shared by the detector tests and the match-block property test.
import type { AuditEvent } from '../../../agent/audit/event.ts'
import { at, times } from './events.ts'

const forbidden = (user: string, ip = '10.0.0.1') => (ms: number) => at(ms, { user: { username: user }, sourceIPs: [ip], responseStatus: { code: 403 } })
const secretGet = (user: string) => (ms: number, i: number) => at(ms, { user: { username: user }, objectRef: { resource: 'secrets', namespace: 'default', name: `s${i}` } })
const secretMissing = (user: string) => (ms: number, i: number) => at(ms, { user: { username: user }, requestURI: `/api/v1/namespaces/prod/secrets/guess-${i}`, objectRef: { resource: 'secrets', namespace: 'prod', name: `guess-${i}`, apiVersion: 'v1' }, responseStatus: { code: 404 } })
const deletes = (user: string) => (ms: number, i: number) => at(ms, { verb: 'delete', user: { username: user }, objectRef: { resource: 'configmaps', namespace: 'default', name: `c${i}` } })
const execs = (user: string) => (ms: number) => at(ms, { verb: 'create', user: { username: user }, objectRef: { resource: 'pods', subresource: 'exec', namespace: 'default', name: 'p' }, responseStatus: { code: 101 } })
const anonymous = (uri: string) => (ms: number) => at(ms, { user: { username: 'system:anonymous' }, requestURI: uri, sourceIPs: ['203.0.113.9'], responseStatus: { code: 403 } })
const sa = 'system:serviceaccount:payments:ledger'
const saCall = (ip: string, agent: string) => (ms: number) => at(ms, { user: { username: sa }, sourceIPs: [ip], userAgent: agent })
const minuteOf = (user: string, n: number, minute: number) => times(n, Math.floor(59_000 / n), (ms) => at(ms, { user: { username: user } }), minute * 60_000)
const received = (id: string, ms: number) => at(ms, { auditID: id, stage: 'RequestReceived', verb: 'create', objectRef: { resource: 'configmaps', namespace: 'default' }, responseStatus: undefined })
const completed = (id: string, ms: number) => ({ ...received(id, ms), stage: 'ResponseComplete', responseStatus: { code: 201 } })

export const cases: { id: string; fires: () => AuditEvent[]; quiet: () => AuditEvent[]; because: string }[] = [
  { id: 'forbidden-burst', fires: () => times(21, 1000, forbidden('mallory')), quiet: () => times(20, 1000, forbidden('mallory')), because: '20 is not more than 20' },
  { id: 'forbidden-burst-source-ip', fires: () => times(31, 500, (ms, i) => forbidden(`user-${i % 5}`, '198.51.100.7')(ms)), quiet: () => times(31, 2500, (ms, i) => forbidden(`user-${i % 5}`, '198.51.100.7')(ms)), because: 'spread over more than the window' },
  { id: 'secret-read-burst', fires: () => times(31, 1000, secretGet('eve@example.com')), quiet: () => times(40, 1000, secretGet('system:node:cp-1')), because: 'nodes read secrets for their pods' },
  { id: 'secret-access-denied-burst', fires: () => times(11, 10_000, secretMissing('system:serviceaccount:web:frontend')), quiet: () => times(30, 10_000, secretMissing('system:node:worker-1')), because: 'a kubelet retries a secret its pod mounts that does not exist yet' },
  { id: 'delete-burst', fires: () => times(21, 1000, deletes('eve@example.com')), quiet: () => times(40, 1000, deletes('system:serviceaccount:kube-system:namespace-controller')), because: 'the namespace controller deletes in bulk' },
  { id: 'exec-burst', fires: () => times(11, 10_000, execs('eve@example.com')), quiet: () => times(11, 40_000, execs('eve@example.com')), because: 'eleven execs over more than five minutes' },
  { id: 'anonymous-burst', fires: () => times(11, 1000, anonymous('/api/v1/secrets')), quiet: () => times(60, 500, anonymous('/healthz')), because: 'health checks are left out' },
  {
    id: 'serviceaccount-new-source',
    fires: () => [...times(5, 60_000, saCall('10.244.1.5', 'ledger/1.0')), saCall('203.0.113.50', 'ledger/1.0')(3_700_000)],
    quiet: () => [...times(5, 60_000, saCall('10.244.1.5', 'ledger/1.0')), saCall('203.0.113.50', 'ledger/1.0')(600_000)],
    because: 'a new address inside the learning hour',
  },
  {
    id: 'serviceaccount-new-user-agent',
    fires: () => [...times(5, 60_000, saCall('10.244.1.5', 'ledger/1.0')), saCall('10.244.1.5', 'curl/8.5.0')(3_700_000)],
    quiet: () => [...times(65, 60_000, saCall('10.244.1.5', 'ledger/1.0'))],
    because: 'the same client all along',
  },
  {
    id: 'request-rate-baseline',
    fires: () => [...Array.from({ length: 35 }, (_, m) => minuteOf('ci-bot', 30, m)).flat(), ...minuteOf('ci-bot', 400, 35)],
    quiet: () => [...Array.from({ length: 35 }, (_, m) => minuteOf('ci-bot', 30, m)).flat(), ...minuteOf('ci-bot', 80, 35)],
    because: 'well above the mean, but below the 100 a minute floor',
  },
  {
    id: 'dropped-event',
    fires: () => [received('lost', 0), ...times(70, 1000, (ms) => at(ms), 1000)],
    quiet: () => [received('kept', 0), completed('kept', 50_000), ...times(70, 1000, (ms) => at(ms), 1000)],
    because: 'its response came within the minute',
  },
  { id: 'trail-silent', fires: () => [at(0), at(301_000)], quiet: () => times(20, 60_000, (ms) => at(ms)), because: 'an event every minute' },
]

