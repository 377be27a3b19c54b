// Which collector the sender talks to, of the configured list (collector.urls):
// the first is preferred. A request that fails because the collector is not
// there (connection refused or reset, a timeout, `unavailable`: HTTP 502-504 or
// Connect's code) moves the agent to the next; a refusal on the merits (a bad
// signature, a broken chain) does not, since every collector of one store
// would give the same answer. Away from the preferred one, a request goes to it
// again after `failbackIntervalMs` (a probe with real batches); the agent stays
// back on it when that request succeeds. Each failed probe doubles the wait, up
// to MAX_PROBE_BACKOFF times the interval: a preferred collector that hangs
// costs a request timeout per probe, and those grow rarer. All the URLs must be collectors
// of one store (the PostgreSQL tier): the chain goes on wherever the agent sends.
// This module only chooses; the sender sends and the agent logs and counts.

/** The failure reasons (SendError.reason) that mean "this collector is not there", not "this batch is wrong". */
const FAILOVER_REASONS: ReadonlySet<string> = new Set(['transport', 'timeout', 'unavailable'])

/** The longest wait between probes, in failback intervals (30 s by default: 4 minutes). */
export const MAX_PROBE_BACKOFF = 8

export interface CollectorSwitch {
  from: string
  to: string
  /** transport, timeout or unavailable (moved away), or failback (back on the preferred one). */
  reason: string
}

export class CollectorChoice {
  readonly urls: readonly string[]
  readonly #failbackIntervalMs: number
  readonly #now: () => number
  #current = 0
  /** When a request may next probe the preferred collector (while away from it). */
  #probeAt = 0
  /** The wait before the next probe after this one fails. */
  #probeWaitMs: number

  constructor(urls: readonly string[], failbackIntervalMs: number, now: () => number = Date.now) {
    if (urls.length === 0) throw new Error('CollectorChoice needs at least one URL')
    this.urls = urls
    this.#failbackIntervalMs = failbackIntervalMs
    this.#probeWaitMs = failbackIntervalMs
    this.#now = now
  }

  /** The collector the agent is on (the one `next()` returns between probes). */
  get current(): string {
    return this.urls[this.#current]!
  }

  /** Where the next request goes: the current collector, or the preferred one when a probe is due. */
  next(): string {
    if (this.#current !== 0 && this.#now() >= this.#probeAt) return this.urls[0]!
    return this.current
  }

  /** A request to `url` was answered; returns the switch it made (a probe that brought the agent back), if any. */
  succeeded(url: string): CollectorSwitch | undefined {
    if (this.#current === 0 || url !== this.urls[0]) return undefined
    const from = this.current
    this.#current = 0
    return { from, to: url, reason: 'failback' }
  }

  /** A request to `url` failed with `reason`; returns the switch it made, if any. */
  failed(url: string, reason: string): CollectorSwitch | undefined {
    if (this.urls.length === 1 || !FAILOVER_REASONS.has(reason)) return undefined
    if (url !== this.current) {
      // A probe of the preferred collector failed: stay where the agent is, probe again later.
      this.#probeWaitMs = Math.min(this.#probeWaitMs * 2, this.#failbackIntervalMs * MAX_PROBE_BACKOFF)
      this.#probeAt = this.#now() + this.#probeWaitMs
      return undefined
    }
    const from = this.current
    this.#current = (this.#current + 1) % this.urls.length
    this.#probeWaitMs = this.#failbackIntervalMs
    if (this.#current !== 0) this.#probeAt = this.#now() + this.#failbackIntervalMs
    return { from, to: this.current, reason }
  }
}
