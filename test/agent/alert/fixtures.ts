// Findings, events, configuration and a log capture shared by the alert tests.
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'
import type { AuditEvent } from '../../../agent/audit/event.ts'
import { loadAgentConfig, type AlertConfig } from '../../../agent/config.ts'
import type { Finding, Severity } from '../../../proto/wire.ts'

export type OfferedFinding = Omit<Finding, 'recordIndex'>

let n = 0
export function finding(over: Partial<OfferedFinding> = {}): OfferedFinding {
  n++
  return {
    source: 'rule',
    id: 'secret-read-by-unexpected-user',
    severity: 'high' as Severity,
    message: 'a secret was read by a user outside the allowed list',
    auditId: `0b6a7d1e-0000-4000-8000-${String(n).padStart(12, '0')}`,
    details: {},
    ...over,
  }
}

export function event(over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level: 'Metadata',
    auditID: '0b6a7d1e-0000-4000-8000-000000000001',
    stage: 'ResponseComplete',
    requestURI: '/api/v1/namespaces/payments/secrets/db-password',
    verb: 'get',
    user: { username: 'system:serviceaccount:payments:worker', groups: ['system:serviceaccounts'] },
    sourceIPs: ['10.1.2.3'],
    userAgent: 'kubectl/v1.31.0',
    objectRef: { resource: 'secrets', namespace: 'payments', name: 'db-password', apiVersion: 'v1' },
    responseStatus: { code: 200 },
    requestReceivedTimestamp: new Date().toISOString(),
    stageTimestamp: new Date().toISOString(),
    ...over,
  }
}

/** The alert section as the config file gives it, from a YAML-like object of overrides. */
export function alertConfig(alert: Record<string, unknown>): AlertConfig {
  const overrides: Record<string, string | boolean> = { node: 'cp-1', 'collector.url': 'https://collector.example:8443' }
  const walk = (prefix: string, obj: Record<string, unknown>) => {
    for (const [k, v] of Object.entries(obj)) {
      if (v !== null && typeof v === 'object') walk(`${prefix}${k}.`, v as Record<string, unknown>)
      else overrides[`${prefix}${k}`] = typeof v === 'boolean' ? v : String(v)
    }
  }
  walk('alert.', alert)
  return loadAgentConfig({ overrides, env: {} }).alert
}

/** A pino logger at `level` whose lines are kept for inspection. */
export function capturedLogger(level = 'debug'): { logger: Logger; lines: () => Array<Record<string, unknown> & { level: number; msg: string }>; text: () => string } {
  const chunks: string[] = []
  const sink = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(chunk.toString())
      cb()
    },
  })
  const logger = pino({ level, base: { component: 'agent' } }, sink)
  return {
    logger,
    text: () => chunks.join(''),
    lines: () => chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l)),
  }
}

export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000, everyMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, everyMs))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
}
