// A generic JSON webhook: one alert object per request (format: object) or an
// array of them (format: array). The schema is documented in
// docs/operations.md ("Alerts"). Receivers authenticate the agent by a bearer
// token, by an HMAC-SHA256 signature over the timestamp and the exact body, or both.
import { createHmac } from 'node:crypto'
import type { Agent } from 'undici'
import type { AlertConfig } from '../config.ts'
import { bearer, originOf, postJson, SecretFile, sinkDispatcher, type Alert, type AlertSink } from './alert.ts'

export const WEBHOOK_SCHEMA = 'auditrail.alert/v1'
export const SIGNATURE_HEADER = 'x-auditrail-signature'
export const TIMESTAMP_HEADER = 'x-auditrail-timestamp'

/** One alert as the webhook receives it. */
export interface WebhookAlert {
  schema: typeof WEBHOOK_SCHEMA
  alertId: string
  id: string
  source: 'rule' | 'detector'
  severity: string
  message: string
  details: Record<string, string>
  node: string
  auditID: string
  eventTime: string
  user: string
  namespace: string
  resource: string
  verb: string
  sourceIPs: string[]
  userAgent: string
}

export function toWebhookAlert(a: Alert): WebhookAlert {
  const f = a.finding
  return {
    schema: WEBHOOK_SCHEMA,
    alertId: a.alertId,
    id: f.id,
    source: f.source,
    severity: f.severity,
    message: f.message,
    details: f.details,
    node: a.node,
    auditID: f.auditId,
    eventTime: new Date(a.eventMs).toISOString(),
    user: a.user,
    namespace: a.namespace,
    resource: a.resource,
    verb: a.verb,
    sourceIPs: a.sourceIPs,
    userAgent: a.userAgent,
  }
}

/** `sha256=` + hex HMAC-SHA256 of `${timestamp}.${body}`: what a receiver recomputes and compares. */
export function signature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`
}

export class WebhookSink implements AlertSink {
  readonly name = 'webhook'
  readonly origin: string
  readonly groupLimit: number
  readonly #config: AlertConfig['webhook']
  readonly #dispatcher: Agent
  readonly #token: SecretFile | undefined
  readonly #secret: SecretFile | undefined
  readonly #abort = new AbortController()

  constructor(config: AlertConfig['webhook']) {
    this.#config = config
    this.origin = originOf(config.url)
    // One object per request means one alert per send: a failure never resends alerts already accepted.
    this.groupLimit = config.format === 'array' ? Number.MAX_SAFE_INTEGER : 1
    this.#token = config.bearerTokenFile ? new SecretFile(config.bearerTokenFile, 'alert.webhook bearer token') : undefined
    this.#secret = config.hmacSecretFile ? new SecretFile(config.hmacSecretFile, 'alert.webhook HMAC secret') : undefined
    this.#dispatcher = sinkDispatcher({ caFile: config.caFile, timeoutMs: config.timeoutMs })
  }

  async send(alerts: Alert[]): Promise<void> {
    if (this.#config.format === 'array') return this.#post(JSON.stringify(alerts.map(toWebhookAlert)))
    for (const a of alerts) await this.#post(JSON.stringify(toWebhookAlert(a)))
  }

  async #post(body: string): Promise<void> {
    const headers: Record<string, string> = {}
    const secrets: string[] = []
    if (this.#token) await bearer(this.#token, headers, secrets)
    if (this.#secret) {
      const secret = await this.#secret.read()
      const timestamp = String(Math.floor(Date.now() / 1000))
      headers[TIMESTAMP_HEADER] = timestamp
      headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
      secrets.push(secret)
    }
    await postJson(this.#dispatcher, this.#config.url, this.origin, body, headers, this.#config.timeoutMs, this.#abort.signal, secrets)
  }

  async close(): Promise<void> {
    this.#abort.abort()
    await this.#dispatcher.destroy()
  }
}
