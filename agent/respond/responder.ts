// The response stage: a finding that an opt-in policy answers (respond.actions)
// becomes an action against the object of its event, taken through the API
// server under the responder's own identity, or, in dry run (the default),
// only reported. consider() runs on the reading path: it decides, queues and
// never waits; one loop takes the queue at the rate limit's pace (a token
// bucket) and carries the actions out. Every action, dry run or not, becomes a
// finding of its own (responder.pod-deleted...), linked to the finding that
// caused it, which travels to the collector with the next event read and is
// alerted like any other.
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { AuditEvent } from '../audit/event.ts'
import type { RespondConfig, ResponseAction } from '../config.ts'
import { slimEvent, type GroupEvent } from '../guard/finding-groups.ts'
import type { RuleFinding } from '../guard/rule-set.ts'
import type { AgentMetrics } from '../observe/metrics.ts'
import { TokenBucket } from '../../shared/token-bucket.ts'
import { backoffMs } from '../ship/sender.ts'
import { KubeClient, type KubeAnswer } from './kube-client.ts'
import { ResponsePolicies, type SkipReason } from './policy.ts'
import { responseRequest, RESPONSE_FINDING_IDS, VERBS, type ResponseRequest } from './targets.ts'

/** What happened to one response; a metric label. */
type Outcome = 'dry_run' | 'done' | 'gone' | 'failed' | 'dropped'

/** A response's finding and the event of the finding that caused it (what groups and alerts show). */
export interface ResponseFinding {
  finding: RuleFinding
  cause: GroupEvent
}

interface Job {
  action: ResponseAction
  request: ResponseRequest
  cause: RuleFinding
  event: GroupEvent
}

export interface ResponderOptions {
  config: RespondConfig
  node: string
  logger: Logger
  metrics: AgentMetrics
}

const RETRY_INITIAL_MS = 500
const RETRY_MAX_MS = 5000
const WHOAMI_RETRY_MS = 60_000
const DROP_LOG_INTERVAL_MS = 10_000

export class Responder {
  readonly #c: RespondConfig
  readonly #node: string
  readonly #log: Logger
  readonly #m: AgentMetrics
  readonly #policies: ResponsePolicies
  readonly #client: KubeClient
  readonly #bucket: TokenBucket
  readonly #queue: Job[] = []
  /** Action and object already answered, with when: the same object is acted on once per dedupWindow. */
  readonly #answered = new Map<string, number>()
  /** Findings of finished responses, until the reading path takes them (bounded by the queue, see #finish). */
  #finished: ResponseFinding[] = []
  #self: string | undefined
  #whoamiTimer: NodeJS.Timeout | undefined
  #loop: Promise<void> | undefined
  #wake: (() => void) | undefined
  #closing = false
  #closeDone: Promise<void> | undefined
  readonly #abort = new AbortController()
  #lastDropLogMs = 0

  constructor(options: ResponderOptions) {
    this.#c = options.config
    this.#node = options.node
    this.#log = options.logger
    this.#m = options.metrics
    this.#policies = new ResponsePolicies(this.#c)
    this.#client = new KubeClient(this.#c.apiServer)
    this.#bucket = new TokenBucket({ perSecond: this.#c.rateLimit.perMinute / 60, burst: this.#c.rateLimit.burst }, performance.now())
    this.#m.responseQueueLength.set(0)
  }

  /** Learns the responder's own identity (in the background) and starts the loop. */
  start(): void {
    this.#log.info({ apiServer: this.#client.origin, dryRun: this.#c.dryRun, policies: this.#c.policies, excludeNamespaces: this.#c.excludeNamespaces }, this.#c.dryRun ? 'responders on, in dry run: they report what they would do and change nothing' : 'responders on: they act through the API server')
    void this.#whoami()
    this.#loop = this.#run()
  }

  /** The identity the API server sees (SelfSubjectReview): its events are never answered, and the log says who acts. */
  async #whoami(): Promise<void> {
    const a = await this.#client.send({ method: 'POST', path: '/apis/authentication.k8s.io/v1/selfsubjectreviews', contentType: 'application/json', body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' }), userAgent: this.#userAgent() }, this.#abort.signal)
    if (this.#closing) return
    let username: unknown
    try {
      if (a.status === 201 || a.status === 200) username = (JSON.parse(a.body) as { status?: { userInfo?: { username?: unknown } } }).status?.userInfo?.username
    } catch {
      // Not the API server's JSON (a proxy's page?): said below, with the status.
    }
    if (typeof username === 'string' && username) {
      this.#self = username
      this.#log.info({ identity: username }, 'responder identity: its actions show in the audit log under this user')
      return
    }
    this.#log.warn({ status: a.status, apiServer: this.#client.origin }, `cannot learn the responder's identity from the API server (${a.message || `HTTP ${a.status}`}); retrying in a minute. Check respond.apiServer (URL, CA, token)`)
    this.#whoamiTimer = setTimeout(() => void this.#whoami(), WHOAMI_RETRY_MS)
    this.#whoamiTimer.unref()
  }

  /**
   * Decides the responses to an event's findings and queues them. Called on the
   * reading path: never waits, never throws. A response that cannot be queued
   * (queue full) adds its finding to `findings` at once.
   */
  consider(event: AuditEvent, findings: RuleFinding[]): void {
    const n = findings.length
    for (let i = 0; i < n; i++) {
      const f = findings[i]!
      const actions = this.#policies.actionsFor(f)
      if (actions.length === 0) continue
      const nowMs = Date.now()
      const excluded = this.#policies.exclusion(f, event, nowMs, this.#self)
      for (const action of actions) {
        if (excluded) {
          this.#skip(excluded, action, f)
          continue
        }
        let request
        try {
          request = responseRequest(action, event, { ruleId: f.id, auditId: f.auditId })
        } catch {
          // A name that cannot be a URL path segment (a lone surrogate): no object the API server could have made.
        }
        if (!request) {
          this.#skip('not_applicable', action, f)
          continue
        }
        const key = `${action}\u0000${request.path}`
        const answeredAt = this.#answered.get(key)
        if (answeredAt !== undefined && nowMs - answeredAt < this.#c.dedupWindowMs) {
          this.#skip('duplicate', action, f)
          continue
        }
        const job: Job = { action, request, cause: f, event: slimEvent(event) }
        if (this.#queue.length >= this.#c.queueSize) {
          findings.push(this.#finish(job, 'dropped', `the response queue is full (respond.queueSize ${this.#c.queueSize}; the rate limit allows ${this.#c.rateLimit.perMinute} a minute)`).finding)
          continue
        }
        this.#remember(key, nowMs)
        this.#queue.push(job)
        this.#m.responseQueueLength.set(this.#queue.length)
        this.#wake?.()
      }
    }
  }

  /** The findings of the responses finished since the last call, for the batch of the event being read. */
  takeFindings(): ResponseFinding[] {
    if (this.#finished.length === 0) return NONE
    const out = this.#finished
    this.#finished = []
    return out
  }

  /** Stops the loop; what is still queued is dropped, counted and logged. Safe to call again. */
  close(): Promise<void> {
    this.#closeDone ??= this.#close()
    return this.#closeDone
  }

  async #close(): Promise<void> {
    this.#closing = true
    clearTimeout(this.#whoamiTimer)
    this.#abort.abort()
    this.#wake?.()
    await this.#loop
    if (this.#queue.length > 0) {
      for (const job of this.#queue) this.#m.responses.inc({ action: job.action, outcome: 'dropped' })
      this.#log.warn({ dropped: this.#queue.length }, 'the agent is stopping: queued responses dropped')
      this.#queue.length = 0
    }
    await this.#client.close()
  }

  async #run(): Promise<void> {
    while (!this.#closing) {
      const wait = this.#queue.length === 0 ? Infinity : this.#bucket.waitMs(performance.now())
      if (wait > 0) {
        await this.#sleep(wait)
        continue
      }
      this.#bucket.take(performance.now())
      const job = this.#queue.shift()!
      this.#m.responseQueueLength.set(this.#queue.length)
      if (this.#c.dryRun) {
        this.#finish(job, 'dry_run')
        continue
      }
      await this.#act(job)
    }
  }

  async #act(job: Job): Promise<void> {
    let answer: KubeAnswer = { status: 0, message: '', body: '' }
    let auditId = ''
    for (let attempt = 1; attempt <= this.#c.maxAttempts && !this.#closing; attempt++) {
      if (attempt > 1) await sleep(backoffMs(attempt - 1, RETRY_INITIAL_MS, RETRY_MAX_MS), undefined, { signal: this.#abort.signal }).catch(() => {})
      if (this.#closing) break
      auditId = randomUUID()
      const r = job.request
      answer = await this.#client.send({ method: r.method, path: r.path, contentType: r.contentType, body: r.body, userAgent: this.#userAgent(job.cause), auditId }, this.#abort.signal)
      // No answer, throttled, or the server's trouble: worth another try. Anything else is the answer.
      if (!(answer.status === 0 || answer.status === 429 || answer.status >= 500)) break
    }
    const s = answer.status
    // 404: gone already; 409 on a delete: the uid precondition failed, another object took the name.
    const outcome: Outcome = s >= 200 && s < 300 ? 'done' : s === 404 || (s === 409 && job.request.method === 'DELETE') ? 'gone' : 'failed'
    this.#finish(job, outcome, outcome === 'done' ? undefined : answer.message || `HTTP ${s}`, { requestAuditId: auditId, ...(s ? { httpStatus: String(s) } : {}) })
  }

  /** Counts, logs and reports one response's outcome. */
  #finish(job: Job, outcome: Outcome, why?: string, extra: Record<string, string> = {}): ResponseFinding {
    const { action, request, cause } = job
    this.#m.responses.inc({ action, outcome })
    const verbs = VERBS[action]
    const answering = `answering ${cause.id} (audit ID ${cause.auditId}, by ${job.event.user?.username ?? 'unknown'})`
    const message = {
      dry_run: `${verbs.would} ${request.object} (dry run: nothing changed), ${answering}`,
      done: `${verbs.done} ${request.object}, ${answering}`,
      gone: `${request.object} was gone before it could be ${verbs.done} (${why}), ${answering}`,
      failed: `could not ${verbs.would.slice('would '.length)} ${request.object}: ${why}; ${answering}`,
      dropped: `did not ${verbs.would.slice('would '.length)} ${request.object}: ${why}; ${answering}`,
    }[outcome]
    const finding: RuleFinding = {
      source: 'rule',
      id: RESPONSE_FINDING_IDS[action],
      // An automated change to the cluster, or one it would make: always worth a person's attention.
      severity: 'high',
      message,
      auditId: cause.auditId,
      details: {
        title: `Responder: ${action}`,
        action,
        outcome,
        dryRun: String(outcome === 'dry_run'),
        target: request.object,
        ...(request.namespace ? { namespace: request.namespace } : {}),
        resource: job.event.objectRef?.resource ?? '',
        ...(job.event.objectRef?.name ? { name: job.event.objectRef.name } : {}),
        causeRule: cause.id,
        causeSource: cause.source,
        causeAuditId: cause.auditId,
        ...(job.event.user?.username ? { user: job.event.user.username } : {}),
        node: this.#node,
        ...extra,
      },
    }
    const level = outcome === 'failed' || outcome === 'dropped' ? 'warn' : 'info'
    if (outcome !== 'dropped' || Date.now() - this.#lastDropLogMs >= DROP_LOG_INTERVAL_MS) {
      if (outcome === 'dropped') this.#lastDropLogMs = Date.now()
      this.#log[level]({ action, outcome, object: request.object, rule: cause.id, auditId: cause.auditId, ...extra }, message)
    }
    const out = { finding, cause: job.event }
    // Bounded: at most one finding per queued job, and the reading path takes them with every event.
    if (outcome !== 'dropped') {
      if (this.#finished.length < this.#c.queueSize) this.#finished.push(out)
      else this.#log.warn({ action, rule: cause.id }, 'a response finding was not shipped: no event was read for a long time and the findings waiting for one reached respond.queueSize')
    }
    return out
  }

  #skip(reason: SkipReason, action: ResponseAction, f: RuleFinding): void {
    this.#m.responsesSkipped.inc({ reason })
    this.#log.debug({ action, reason, rule: f.id, auditId: f.auditId }, 'no response')
  }

  /** Remembers an answered object; the map is pruned as it fills, so it stays within the bound. */
  #remember(key: string, nowMs: number): void {
    if (this.#answered.size >= MAX_ANSWERED) {
      for (const [k, at] of this.#answered) if (nowMs - at >= this.#c.dedupWindowMs) this.#answered.delete(k)
      // Still full of recent answers: the oldest go (a Map keeps insertion order).
      for (const k of this.#answered.keys()) {
        if (this.#answered.size < MAX_ANSWERED) break
        this.#answered.delete(k)
      }
    }
    this.#answered.delete(key)
    this.#answered.set(key, nowMs)
  }

  #userAgent(cause?: RuleFinding): string {
    return `auditrail-responder (node ${this.#node}${cause ? `; answering ${cause.id}, audit ID ${cause.auditId}` : ''})`
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        if (this.#wake === done) this.#wake = undefined
        resolve()
      }
      const timer = Number.isFinite(ms) ? setTimeout(done, ms) : undefined
      this.#wake = done
    })
  }
}

const NONE: ResponseFinding[] = []
const MAX_ANSWERED = 10_000
