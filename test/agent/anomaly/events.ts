// Audit events for detector tests: a base event at a given second, with overrides.
import type { AuditEvent } from '../../../agent/audit/event.ts'
import { Detectors, type DetectorFinding } from '../../../agent/anomaly/detectors.ts'

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

/** `n` events `stepMs` apart from `startMs`, made by `make` from their time and index. */
export function times(n: number, stepMs: number, make: (ms: number, i: number) => AuditEvent, startMs = 0): AuditEvent[] {
  return Array.from({ length: n }, (_, i) => make(startMs + i * stepMs, i))
}

/** The findings of built-in detector `id` over `events`, fed to fresh built-in detectors in order. */
export function builtinFindings(id: string, events: AuditEvent[]): DetectorFinding[] {
  const d = new Detectors({ builtin: true, dirs: [] })
  const out: DetectorFinding[] = []
  for (const e of events) d.inspect(e, out)
  return out.filter((f) => f.id === id)
}
