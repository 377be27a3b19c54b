// The alert path: findings leave the node at once, not with their batch.
// offer() is called on the reading path, so it only filters, deduplicates and
// queues: it never waits and never throws. Each sink has its own bounded queue
// and its own loop, so a sink that hangs or is down delays nothing but itself;
// when its queue is full the alert is dropped and counted, never the reading.
import { performance } from 'node:perf_hooks'
import { LRUCache } from 'lru-cache'
import type { Logger } from 'pino'
import { severityRank, type Finding } from '../../proto/wire.ts'
import type { AuditEvent } from '../audit/event.ts'
import type { AgentConfig, AlertConfig } from '../config.ts'
import type { AgentMetrics } from '../observe/metrics.ts'
import { backoffMs } from '../ship/sender.ts'
import { AlertmanagerSink } from './alertmanager.ts'
import { buildAlert, dedupKey, SinkError, type Alert, type AlertSink } from './alert.ts'
import { WebhookSink } from './webhook.ts'

export interface AlertDispatcherOptions {
  config: AlertConfig
  node: string
  logger: Logger
  metrics: AgentMetrics
  /** The sinks to send to; by default those configured (alertmanager, webhook). */
  sinks?: AlertSink[]
}

interface Entry {
  alert: Alert
  attempts: number
}

/** One sink's queue and loop. */
interface Lane {
  sink: AlertSink
  queue: Entry[]
  sending: number
  loop: Promise<void> | undefined
  wake: (() => void) | undefined
  failures: number
  lastDropLogMs: number
}

/** A finding callback for AuditAgent's `onFinding`. */
export type OnFinding = (finding: Omit<Finding, 'recordIndex'>, event: AuditEvent) => void

const DROP_LOG_INTERVAL_MS = 10_000

export class AlertDispatcher {
  readonly #c: AlertConfig
  readonly #node: string
  readonly #log: Logger
  readonly #m: AgentMetrics
  readonly #lanes: Lane[]
  readonly #minRank: number
  readonly #coolDown: LRUCache<string, true> | undefined
  #closing = false
  #stopped = false
  #closeDone: Promise<void> | undefined
  #idleWaiters: Array<() => void> = []
  #lastOfferErrorMs = 0

  constructor(options: AlertDispatcherOptions) {
    this.#c = options.config
    this.#node = options.node
    this.#log = options.logger
    this.#m = options.metrics
    this.#minRank = severityRank(this.#c.minSeverity)
    // Bounded both ways: at most coolDownMaxKeys incidents remembered, each for coolDown.
    this.#coolDown = this.#c.coolDownMs > 0 ? new LRUCache<string, true>({ max: this.#c.coolDownMaxKeys, ttl: this.#c.coolDownMs }) : undefined
    const sinks = options.sinks ?? configuredSinks(this.#c)
    this.#lanes = sinks.map((sink) => ({ sink, queue: [], sending: 0, loop: undefined, wake: undefined, failures: 0, lastDropLogMs: 0 }))
    for (const lane of this.#lanes) {
      this.#m.alertQueueLength.set({ sink: lane.sink.name }, 0)
      lane.loop = this.#run(lane)
    }
    this.#log.info({ sinks: sinks.map((s) => `${s.name} ${s.origin}`), minSeverity: this.#c.minSeverity, coolDownMs: this.#c.coolDownMs }, 'alerting on')
  }

  /** For AuditAgent's `onFinding`. */
  readonly onFinding: OnFinding = (finding, event) => this.offer(finding, event)

  /**
   * Queues a finding for every sink if it is severe enough and not within its
   * cool-down. A group's finding (details.groupState open, update or end) is
   * deduplicated by its group: open and end always pass. Never blocks, never throws.
   */
  offer(finding: Omit<Finding, 'recordIndex'>, event: AuditEvent): void {
    try {
      if (severityRank(finding.severity) < this.#minRank) return
      const alert = buildAlert(finding, event, this.#node, performance.now())
      const key = dedupKey(alert)
      // A group's opening and end always leave; its updates at most once per cool-down.
      const state = finding.details.groupState
      if (state !== 'open' && state !== 'end' && this.#coolDown?.has(key)) {
        this.#m.alertsDeduplicated.inc()
        return
      }
      let queued = false
      for (const lane of this.#lanes) {
        if (this.#closing) {
          this.#drop(lane, 1, 'closed', [finding.id])
        } else if (lane.queue.length >= this.#c.queueSize) {
          this.#drop(lane, 1, 'queue_full', [finding.id])
        } else {
          lane.queue.push({ alert, attempts: 0 })
          this.#m.alertQueueLength.set({ sink: lane.sink.name }, lane.queue.length)
          lane.wake?.()
          queued = true
        }
      }
      // Only an alert that left (or will) starts a cool-down: a dropped one must not silence its repeats.
      if (queued && state !== 'end') this.#coolDown?.set(key, true)
      if (state === 'end') this.#coolDown?.delete(key)
    } catch (err) {
      const now = Date.now()
      if (now - this.#lastOfferErrorMs >= DROP_LOG_INTERVAL_MS) {
        this.#lastOfferErrorMs = now
        this.#log.error({ err: (err as Error).message, findingId: finding?.id }, 'could not queue an alert (reading goes on)')
      }
    }
  }

  /** Alerts waiting or being sent, over all sinks. */
  get pending(): number {
    return this.#lanes.reduce((n, l) => n + l.queue.length, 0)
  }

  /** Resolves when every queue is empty (sent or dropped). */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push(resolve))
  }

  /**
   * Stops taking alerts, waits up to `timeoutMs` (alert.closeTimeout) for the
   * queues to drain, then abandons what is left (counted as dropped, reason closed).
   */
  close(timeoutMs = this.#c.closeTimeoutMs): Promise<void> {
    this.#closeDone ??= this.#close(timeoutMs)
    return this.#closeDone
  }

  async #close(timeoutMs: number): Promise<void> {
    this.#closing = true
    for (const lane of this.#lanes) lane.wake?.()
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs)
    })
    await Promise.race([Promise.all(this.#lanes.map((l) => l.loop)), deadline])
    clearTimeout(timer)
    this.#stopped = true
    for (const lane of this.#lanes) {
      lane.wake?.()
      const left = lane.queue.splice(0)
      if (left.length > 0) this.#drop(lane, left.length, 'closed', left.map((e) => e.alert.finding.id))
      this.#m.alertQueueLength.set({ sink: lane.sink.name }, 0)
    }
    // Aborts a request still in flight, so that stopping the agent waits for no receiver.
    await Promise.all(this.#lanes.map((l) => l.sink.close().catch(() => {})))
    await Promise.all(this.#lanes.map((l) => l.loop))
    this.#notifyIdle()
  }

  // --- one sink's loop

  async #run(lane: Lane): Promise<void> {
    const sink = lane.sink
    const limit = Math.min(this.#c.maxAlertsPerRequest, sink.groupLimit)
    while (!this.#stopped) {
      if (lane.queue.length === 0) {
        this.#notifyIdle()
        if (this.#closing) return
        await new Promise<void>((resolve) => {
          lane.wake = resolve
        })
        lane.wake = undefined
        continue
      }
      this.#expire(lane)
      if (lane.queue.length === 0) continue
      const group = lane.queue.slice(0, limit)
      lane.sending = group.length
      try {
        await sink.send(group.map((e) => e.alert))
        lane.sending = 0
        if (this.#stopped) return
        lane.queue.splice(0, group.length)
        this.#m.alertQueueLength.set({ sink: sink.name }, lane.queue.length)
        this.#m.alertsSent.inc({ sink: sink.name }, group.length)
        const now = performance.now()
        for (const e of group) this.#m.alertDelay.observe({ sink: sink.name }, (now - e.alert.offeredAt) / 1000)
        if (lane.failures > 0) this.#log.info({ sink: sink.name, origin: sink.origin, afterFailures: lane.failures }, 'alert sink accepts alerts again')
        lane.failures = 0
        this.#log.debug({ sink: sink.name, alerts: group.map((e) => ({ id: e.alert.finding.id, auditID: e.alert.finding.auditId, user: e.alert.user, resource: e.alert.resource })) }, 'alerts sent')
      } catch (err) {
        lane.sending = 0
        if (this.#stopped) return
        const error = err instanceof SinkError ? err : new SinkError('transport', (err as Error).message)
        this.#m.alertSendFailures.inc({ sink: sink.name, reason: error.reason })
        lane.failures++
        if (!error.retry) {
          lane.queue.splice(0, group.length)
          this.#drop(lane, group.length, 'rejected', group.map((e) => e.alert.finding.id), error.message)
          continue
        }
        for (const e of group) e.attempts++
        const attempt = group[0]!.attempts
        const delay = backoffMs(attempt, this.#c.retry.initialDelayMs, this.#c.retry.maxDelayMs)
        const level = lane.failures === 1 || lane.failures % 10 === 0 ? 'warn' : 'debug'
        this.#log[level]({ sink: sink.name, origin: sink.origin, reason: error.reason, attempt, retryInMs: delay, queued: lane.queue.length }, `alert send failed: ${error.message}`)
        this.#expire(lane)
        if (lane.queue.length > 0) await this.#sleep(lane, delay)
      }
    }
  }

  /** Drops, from the head of the queue, alerts out of attempts or older than alert.retry.maxAge. */
  #expire(lane: Lane): void {
    const now = performance.now()
    const expired: Entry[] = []
    lane.queue = lane.queue.filter((e) => {
      const keep = e.attempts < this.#c.retry.maxAttempts && now - e.alert.offeredAt < this.#c.retry.maxAgeMs
      if (!keep) expired.push(e)
      return keep
    })
    if (expired.length > 0) this.#drop(lane, expired.length, 'retries_exhausted', expired.map((e) => e.alert.finding.id))
  }

  #drop(lane: Lane, count: number, reason: 'queue_full' | 'retries_exhausted' | 'rejected' | 'closed', findingIds: string[], why?: string): void {
    const sink = lane.sink
    this.#m.alertsDropped.inc({ sink: sink.name, reason }, count)
    this.#m.alertQueueLength.set({ sink: sink.name }, lane.queue.length)
    const now = Date.now()
    // A full queue drops on every offer: say so once per interval, not once per alert.
    if (reason === 'queue_full' && now - lane.lastDropLogMs < DROP_LOG_INTERVAL_MS) return
    if (reason === 'queue_full') lane.lastDropLogMs = now
    const ids = [...new Set(findingIds)].slice(0, 20)
    const hint = {
      queue_full: `its queue holds alert.queueSize (${this.#c.queueSize}) alerts and the sink does not keep up; further drops are counted in auditrail_alerts_dropped_total`,
      retries_exhausted: `not accepted after alert.retry.maxAttempts (${this.#c.retry.maxAttempts}) attempts or within alert.retry.maxAge (${this.#c.retry.maxAgeMs} ms)`,
      rejected: `the receiver refused them for good${why ? `: ${why}` : ''}`,
      closed: 'the agent is stopping and they were not sent within alert.closeTimeout',
    }[reason]
    this.#log.error({ sink: sink.name, origin: sink.origin, reason, count, findingIds: ids }, `alerts dropped: ${hint}`)
  }

  #sleep(lane: Lane, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      // During a backoff a new alert does not cut the wait short; only close() does.
      const wake = () => {
        if (this.#stopped) done()
      }
      function done() {
        clearTimeout(timer)
        if (lane.wake === wake) lane.wake = undefined
        resolve()
      }
      lane.wake = wake
    })
  }

  #notifyIdle(): void {
    if (this.pending > 0 && !this.#stopped) return
    for (const w of this.#idleWaiters.splice(0)) w()
  }
}

/** The sinks the configuration names (none when alerting is off). */
export function configuredSinks(config: AlertConfig): AlertSink[] {
  const sinks: AlertSink[] = []
  if (config.alertmanager.url) sinks.push(new AlertmanagerSink(config.alertmanager, config.coolDownMs))
  if (config.webhook.url) sinks.push(new WebhookSink(config.webhook))
  return sinks
}

/**
 * The alert path for `auditrail agent`: a dispatcher when a sink is
 * configured, else undefined. Pass `dispatcher.onFinding` to AuditAgent as
 * `onFinding`, and `await dispatcher.close()` after `agent.stop()`.
 */
export function createAlertDispatcher(config: AgentConfig, deps: { logger: Logger; metrics: AgentMetrics }): AlertDispatcher | undefined {
  if (!config.alert.enabled) return undefined
  return new AlertDispatcher({ config: config.alert, node: config.node, logger: deps.logger, metrics: deps.metrics })
}
