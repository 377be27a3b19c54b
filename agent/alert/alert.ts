// What an alert carries, and what every sink shares: the HTTP client, the
// request with its timeout, the reading of credential files, and the errors
// whose `reason` becomes a metric label. A sink turns alerts into its own
// wire format (alertmanager.ts, webhook.ts) and nothing else.
import { randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { Agent, request, type Dispatcher } from 'undici'
import type { AuditEvent } from '../audit/event.ts'
import type { Finding } from '../../proto/wire.ts'
import { peerDispatcher } from '../ship/sender.ts'

/**
 * One finding on its way out, with the few event fields an alert shows.
 * The event itself is not kept: a queued alert stays small whatever the event held.
 */
export interface Alert {
  /** Random, fixed for the alert's life: retries carry the same id, so a receiver can drop a repeat. */
  alertId: string
  finding: Omit<Finding, 'recordIndex'>
  node: string
  user: string
  namespace: string
  /** `resource[/name][/subresource]`, as kubectl names it. */
  resource: string
  verb: string
  sourceIPs: string[]
  userAgent: string
  /** The event's stageTimestamp (Unix ms), or the time it was offered when the event has none. */
  eventMs: number
  /** performance.now() when offered: the delay metric and max age count from here. */
  offeredAt: number
}

export function buildAlert(finding: Omit<Finding, 'recordIndex'>, event: AuditEvent, node: string, offeredAt: number): Alert {
  const ref = event.objectRef
  const resource = ref?.resource ? [ref.resource, ref.name, ref.subresource].filter(Boolean).join('/') : (event.requestURI?.split('?')[0] ?? '')
  const stage = event.stageTimestamp ? Date.parse(event.stageTimestamp) : NaN
  return {
    alertId: randomUUID(),
    finding: { ...finding, details: { ...finding.details } },
    node,
    user: event.user?.username ?? '',
    namespace: ref?.namespace ?? '',
    resource,
    verb: event.verb,
    sourceIPs: event.sourceIPs?.slice(0, 8) ?? [],
    userAgent: event.userAgent ?? '',
    eventMs: Number.isFinite(stage) ? stage : Date.now(),
    offeredAt,
  }
}

/** What makes two findings the same incident: their group, else a detector's key (or the user), the namespace, the resource. */
export function dedupKey(a: Alert): string {
  const group = a.finding.details.group
  return group ? JSON.stringify(['group', group]) : JSON.stringify([a.finding.id, a.finding.details.key ?? a.user, a.namespace, a.resource])
}

/** A destination for alerts. `send` resolves when the receiver accepted every alert given, or throws SinkError. */
export interface AlertSink {
  /** A metric label: alertmanager or webhook. */
  readonly name: string
  /** Scheme, host and port only: what logs may show (a webhook path often holds a token). */
  readonly origin: string
  /** Most alerts one send() takes (the dispatcher's own limit applies too). */
  readonly groupLimit: number
  send(alerts: Alert[]): Promise<void>
  close(): Promise<void>
}

/** Why a send failed. `reason` is a metric label; `retry` false means the receiver refused these alerts for good. */
export class SinkError extends Error {
  readonly reason: 'transport' | 'timeout' | 'http_4xx' | 'http_5xx'
  readonly retry: boolean
  constructor(reason: SinkError['reason'], message: string, retry = true) {
    super(message)
    this.name = 'SinkError'
    this.reason = reason
    this.retry = retry
  }
}

/** The HTTP client of one sink: keep-alive, TLS verified (against `ca` when given), connect timeout. */
export function sinkDispatcher(options: { caFile: string; timeoutMs: number }): Agent {
  return peerDispatcher({ timeoutMs: options.timeoutMs, ...(options.caFile ? { ca: readFileSync(options.caFile) } : {}) })
}

/** Sets the Authorization header from a bearer token file, and notes the token as a secret to keep out of logs. */
export async function bearer(token: SecretFile, headers: Record<string, string>, secrets: string[]): Promise<void> {
  const value = await token.read()
  headers.authorization = `Bearer ${value}`
  secrets.push(value)
}

/**
 * A credential kept in a file (a mounted Secret). Read once at start so a
 * wrong path fails the agent's start, then again before each request so a
 * rotated Secret is used without a restart. Its value never reaches a log or an error.
 */
export class SecretFile {
  readonly path: string
  #last: string

  constructor(path: string, what: string) {
    this.path = path
    try {
      this.#last = readFileSync(path, 'utf8').trim()
    } catch (err) {
      throw new Error(`cannot read ${what} from ${path} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'}): mount the Secret there, or fix the path in the configuration`)
    }
    if (!this.#last) throw new Error(`${what} file ${path} is empty`)
  }

  async read(): Promise<string> {
    try {
      const value = (await readFile(this.path, 'utf8')).trim()
      if (value) this.#last = value
    } catch {
      // A Secret being replaced can vanish for an instant: keep the value we had.
    }
    return this.#last
  }
}

/**
 * POSTs a JSON body with a per-request timeout; any answer but 2xx becomes a SinkError.
 * `secrets` are the credential values this request carries (raw and as encoded in headers):
 * a receiver that echoes the request in its error must not put them in our logs.
 */
export async function postJson(dispatcher: Dispatcher, url: string, origin: string, body: string, headers: Record<string, string>, timeoutMs: number, signal: AbortSignal, secrets: string[] = []): Promise<void> {
  let res: Dispatcher.ResponseData
  try {
    res = await request(url, {
      method: 'POST',
      dispatcher,
      headers: { 'content-type': 'application/json', ...headers },
      body,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
    })
  } catch (err) {
    throw transportError(err as Error & { code?: string }, origin, timeoutMs)
  }
  let text = ''
  try {
    text = await res.body.text()
  } catch (err) {
    throw transportError(err as Error & { code?: string }, origin, timeoutMs)
  }
  const status = res.statusCode
  if (status >= 200 && status < 300) return
  // The receiver's own words help, but only a little of them, and never a credential it echoed back.
  let said = text.replace(/\s+/g, ' ').trim()
  for (const secret of secrets) if (secret) said = said.replaceAll(secret, '[redacted]')
  said = status === 401 || status === 403 ? '' : said.slice(0, 200)
  if (status >= 500) throw new SinkError('http_5xx', `${origin} answered HTTP ${status}: ${said}`)
  // 400, 413, 422: these alerts will never be accepted as they are; anything else (401, 403, 404, 429...) may heal.
  const final = status === 400 || status === 413 || status === 422
  const denied = status === 401 || status === 403
  throw new SinkError('http_4xx', `${origin} answered HTTP ${status}${denied ? ': the receiver does not accept this sink\'s credential (check its token, password or secret file)' : `: ${said}`}`, !final)
}

function transportError(err: Error & { code?: string }, origin: string, timeoutMs: number): SinkError {
  if (err.name === 'TimeoutError' || err.code === 'UND_ERR_HEADERS_TIMEOUT' || err.code === 'UND_ERR_BODY_TIMEOUT' || err.code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new SinkError('timeout', `${origin} did not answer within ${timeoutMs} ms`)
  }
  if (err.name === 'AbortError') return new SinkError('transport', `request to ${origin} aborted: the agent is stopping`, false)
  const code = err.code ?? (err.cause as { code?: string } | undefined)?.code
  return new SinkError('transport', `cannot reach ${origin}: ${code ?? err.message}`)
}

/** Scheme, host and port of a URL: safe to log. */
export function originOf(url: string): string {
  return new URL(url).origin
}
