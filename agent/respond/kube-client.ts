// The responder's connection to the API server: HTTPS verified against the
// cluster CA, the responder's own bearer token (re-read before each request:
// a projected service account token is rotated by the kubelet), a User-Agent
// and an Audit-ID that name the response, so the API server's audit log shows
// who acted and why. Nothing else: no retries (the responder bounds them), no
// parsing beyond the status.
import { readFileSync } from 'node:fs'
import { request, type Agent } from 'undici'
import { SecretFile } from '../alert/alert.ts'
import { peerDispatcher } from '../ship/sender.ts'

export interface KubeAnswer {
  /** 0: no answer (transport error, timeout). */
  status: number
  /** The API server's Status message, or the transport error; never the token. */
  message: string
  body: string
}

export class KubeClient {
  readonly #url: string
  readonly #token: SecretFile
  readonly #dispatcher: Agent
  readonly #timeoutMs: number

  /** Reads the CA and the token once, so a wrong path fails the agent's start with the key to fix. */
  constructor(options: { url: string; caFile: string; tokenFile: string; timeoutMs: number }) {
    this.#url = options.url
    let ca: Buffer | undefined
    if (options.caFile) {
      try {
        ca = readFileSync(options.caFile)
      } catch (err) {
        throw new Error(`respond.apiServer.caFile: cannot read ${options.caFile} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'}): mount the cluster CA there (a pod's service account volume has it), or fix the path`)
      }
    }
    this.#token = new SecretFile(options.tokenFile, 'respond.apiServer.tokenFile (the responder\'s token)')
    this.#dispatcher = peerDispatcher({ timeoutMs: options.timeoutMs, ...(ca ? { ca } : {}) })
    this.#timeoutMs = options.timeoutMs
  }

  /** Scheme, host and port: what logs may show. */
  get origin(): string {
    return this.#url
  }

  async send(req: { method: 'GET' | 'POST' | 'DELETE' | 'PATCH'; path: string; contentType?: string; body?: string; userAgent: string; auditId?: string }, signal: AbortSignal): Promise<KubeAnswer> {
    const token = await this.#token.read()
    let res
    try {
      res = await request(`${this.#url}${req.path}`, {
        method: req.method,
        dispatcher: this.#dispatcher,
        headers: {
          authorization: `Bearer ${token}`,
          accept: 'application/json',
          'user-agent': req.userAgent,
          // The API server takes the client's Audit-ID as the request's audit ID: the finding names its own line.
          ...(req.auditId ? { 'audit-id': req.auditId } : {}),
          ...(req.contentType ? { 'content-type': req.contentType } : {}),
        },
        ...(req.body !== undefined ? { body: req.body } : {}),
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.#timeoutMs)]),
      })
    } catch (err) {
      const e = err as Error & { code?: string }
      return { status: 0, message: e.name === 'TimeoutError' ? `no answer within ${this.#timeoutMs} ms` : `cannot reach ${this.#url}: ${e.code ?? e.message}`, body: '' }
    }
    let body = ''
    try {
      body = await res.body.text()
    } catch (err) {
      return { status: 0, message: `the answer from ${this.#url} broke off: ${(err as Error).message}`, body: '' }
    }
    return { status: res.statusCode, message: statusMessage(body).replaceAll(token, '[redacted]'), body }
  }

  async close(): Promise<void> {
    await this.#dispatcher.close()
  }
}

/** The `message` of a metav1.Status, cut short; '' for anything else. */
function statusMessage(body: string): string {
  try {
    const s = JSON.parse(body) as { kind?: unknown; message?: unknown }
    return s.kind === 'Status' && typeof s.message === 'string' ? s.message.slice(0, 300) : ''
  } catch {
    return ''
  }
}
