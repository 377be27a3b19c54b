// Alertmanager's v2 API: POST {url}/api/v2/alerts with a JSON array of
// postable alerts. Alertmanager identifies an alert by its labels, so a retry
// (same labels) updates the alert instead of adding one.
import type { Agent } from 'undici'
import type { AlertConfig } from '../config.ts'
import { bearer, originOf, postJson, SecretFile, sinkDispatcher, type Alert, type AlertSink } from './alert.ts'

/** The body Alertmanager's API takes: labels and annotations are string maps. */
export interface PostableAlert {
  labels: Record<string, string>
  annotations: Record<string, string>
  startsAt: string
  endsAt: string
}

const RESERVED_ANNOTATIONS = new Set(['summary', 'description', 'auditID'])

/** Alertmanager 0.25 accepts only label-name syntax for annotation names: anything else becomes '_'. */
function annotationName(key: string): string {
  const name = key.replace(/[^A-Za-z0-9_]/g, '_')
  return /^[A-Za-z_]/.test(name) ? name : `_${name}`
}

/** Labels (the alert's identity and routing) and annotations (the explanation) of one alert. */
export function toPostableAlert(a: Alert, resolveTimeoutMs: number, now = Date.now()): PostableAlert {
  const f = a.finding
  const labels: Record<string, string> = {
    alertname: f.id,
    severity: f.severity,
    source: f.source,
    node: a.node,
    user: a.user,
    namespace: a.namespace,
    resource: a.resource,
    auditrail: 'true',
    // One alert per group: its opening, updates and end share these labels, so Alertmanager updates one alert.
    group: f.details.group ?? '',
  }
  // An empty label is the same as no label to Alertmanager: leave it out rather than send "".
  for (const [k, v] of Object.entries(labels)) if (!v) delete labels[k]
  const annotations: Record<string, string> = {
    summary: f.message,
    description: describe(a),
    auditID: f.auditId,
  }
  // A detector explains itself in its details (count, baseline, window, key): each becomes an annotation.
  for (const [k, v] of Object.entries(f.details)) {
    const name = annotationName(k)
    annotations[RESERVED_ANNOTATIONS.has(name) || name in annotations ? `detail_${name}` : name] = v
  }
  // endsAt counts from the later of the event and now: a finding from a backlog read after an
  // outage must still arrive as firing, not as already resolved.
  // A group's end resolves its alert now.
  const startsAt = a.eventMs
  const endsAt = Math.max(startsAt, now) + (f.details.groupState === 'end' ? 0 : resolveTimeoutMs)
  return { labels, annotations, startsAt: new Date(startsAt).toISOString(), endsAt: new Date(endsAt).toISOString() }
}

function describe(a: Alert): string {
  const who = a.user || 'an unknown user'
  const what = [a.verb, a.resource || '(no resource)'].join(' ')
  const where = a.namespace ? ` in namespace ${a.namespace}` : ''
  const from = a.sourceIPs.length > 0 ? ` from ${a.sourceIPs.join(', ')}` : ''
  return `${who} ${what}${where}${from} (node ${a.node}, ${a.finding.source} ${a.finding.id})`
}

export class AlertmanagerSink implements AlertSink {
  readonly name = 'alertmanager'
  readonly origin: string
  readonly groupLimit = Number.MAX_SAFE_INTEGER
  readonly #url: string
  readonly #config: AlertConfig['alertmanager']
  readonly #dispatcher: Agent
  readonly #token: SecretFile | undefined
  readonly #password: SecretFile | undefined
  readonly #abort = new AbortController()
  readonly #groupUpdateMs: number

  /** `groupUpdateMs`: alert.coolDown, the longest a growing group's alert goes without an update. */
  constructor(config: AlertConfig['alertmanager'], groupUpdateMs = 0) {
    this.#config = config
    this.#groupUpdateMs = groupUpdateMs
    this.#url = `${config.url}/api/v2/alerts`
    this.origin = originOf(config.url)
    this.#token = config.bearerTokenFile ? new SecretFile(config.bearerTokenFile, 'alert.alertmanager bearer token') : undefined
    this.#password = config.basicAuth.passwordFile ? new SecretFile(config.basicAuth.passwordFile, 'alert.alertmanager basic-auth password') : undefined
    this.#dispatcher = sinkDispatcher({ caFile: config.caFile, timeoutMs: config.timeoutMs })
  }

  async send(alerts: Alert[]): Promise<void> {
    const now = Date.now()
    // A group's alert is updated at most once per cool-down and ended explicitly: it must not resolve by timeout in between.
    const body = JSON.stringify(alerts.map((a) => toPostableAlert(a, this.#config.resolveTimeoutMs + (a.finding.details.group ? this.#groupUpdateMs : 0), now)))
    const headers: Record<string, string> = {}
    const secrets: string[] = []
    if (this.#token) await bearer(this.#token, headers, secrets)
    if (this.#password) {
      const password = await this.#password.read()
      const basic = Buffer.from(`${this.#config.basicAuth.username}:${password}`).toString('base64')
      headers.authorization = `Basic ${basic}`
      secrets.push(basic, password)
    }
    await postJson(this.#dispatcher, this.#url, this.origin, body, headers, this.#config.timeoutMs, this.#abort.signal, secrets)
  }

  async close(): Promise<void> {
    this.#abort.abort()
    await this.#dispatcher.destroy()
  }
}
