// Audit events for detector tests: a base event at a given second, with overrides.
import type { AuditEvent } from '../../../agent/audit/event.ts'

export const T0 = Date.parse('2026-11-25T10:00:00Z')
let serial = 0

export function at(ms: number, fields: Partial<AuditEvent> = {}): AuditEvent {
  const time = new Date(T0 + ms).toISOString().replace('Z', '000Z')
  return {
    kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'Metadata', auditID: `id-${++serial}`, stage: 'ResponseComplete', verb: 'get',
    requestURI: '/api/v1/namespaces/default/pods/p', user: { username: 'alice', groups: ['system:authenticated'] }, sourceIPs: ['10.0.0.1'], userAgent: 'kubectl/v1.31.0',
    objectRef: { resource: 'pods', namespace: 'default', name: 'p', apiVersion: 'v1' }, responseStatus: { code: 200 },
    requestReceivedTimestamp: time, stageTimestamp: time, ...fields,
  }
}
