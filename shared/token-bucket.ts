// A token bucket: `burst` takes may go at once; after that, one per 1/perSecond
// seconds. The agent's responders and the collector's per-stream request limit
// use it. The clock is passed in, so the arithmetic is tested without waiting.

export class TokenBucket {
  readonly #capacity: number
  readonly #perMs: number
  #tokens: number
  #lastMs: number

  constructor(options: { perSecond: number; burst: number }, nowMs: number) {
    this.#capacity = options.burst
    this.#perMs = options.perSecond / 1000
    this.#tokens = options.burst
    this.#lastMs = nowMs
  }

  /** Takes a token if there is one. */
  take(nowMs: number): boolean {
    this.#refill(nowMs)
    if (this.#tokens < 1) return false
    this.#tokens -= 1
    return true
  }

  /** Milliseconds until a token is there (0: now). */
  waitMs(nowMs: number): number {
    this.#refill(nowMs)
    return this.#tokens >= 1 ? 0 : Math.ceil((1 - this.#tokens) / this.#perMs)
  }

  #refill(nowMs: number): void {
    // A clock that steps back adds nothing.
    const elapsed = Math.max(0, nowMs - this.#lastMs)
    this.#lastMs = Math.max(this.#lastMs, nowMs)
    this.#tokens = Math.min(this.#capacity, this.#tokens + elapsed * this.#perMs)
  }
}
