// A count over a sliding window of event time, in a fixed ring of buckets:
// memory per key is constant whatever the rate, and an event up to a window
// late still lands in its own bucket.

export const BUCKETS = 12

export class SlidingWindowCount {
  readonly #bucketMs: number
  readonly #counts = new Uint32Array(BUCKETS)
  /** Absolute index (time / bucketMs) of the newest bucket. */
  #head = -Infinity
  #total = 0

  constructor(windowMs: number) {
    this.#bucketMs = Math.max(1, Math.ceil(windowMs / BUCKETS))
  }

  /** Counts one event at `timeMs`; returns the count in the window ending at the newest event, or -1 for an event older than the window. */
  add(timeMs: number): number {
    const bucket = Math.floor(timeMs / this.#bucketMs)
    if (bucket > this.#head) this.#advance(bucket)
    else if (bucket <= this.#head - BUCKETS) return -1
    this.#counts[bucket % BUCKETS]!++
    this.#total++
    return this.#total
  }

  /** The start of the oldest bucket in the window that holds an event (to a bucket, a twelfth of the window); undefined when empty. */
  oldestMs(): number | undefined {
    for (let b = this.#head - BUCKETS + 1; b <= this.#head; b++) if (this.#counts[((b % BUCKETS) + BUCKETS) % BUCKETS]! > 0) return b * this.#bucketMs
    return undefined
  }

  #advance(bucket: number): void {
    const steps = Math.min(BUCKETS, bucket - this.#head)
    for (let i = 1; i <= steps; i++) {
      const slot = (((bucket - steps + i) % BUCKETS) + BUCKETS) % BUCKETS
      this.#total -= this.#counts[slot]!
      this.#counts[slot] = 0
    }
    this.#head = bucket
  }
}
