// Where sealed batches' bytes are written: one buffer used as a ring. Batches are
// acknowledged in the order they were sealed, so their bytes are freed in the order
// they were taken, and the space of the oldest is written again. A new buffer per
// batch (1 MiB each at full speed) waited in the queue for its acknowledgement,
// outlived the young generation and was freed only by a full collection, which V8
// starts each time external memory has grown by 64 MiB. A batch that does not fit
// (the ring full of unacknowledged batches, or one bigger than it) gets a buffer of
// its own, as before.

export class BatchRing {
  readonly #ring: Buffer
  /** Spans taken from the ring and not yet freed, oldest first: [start, end). */
  readonly #spans: Array<{ start: number; end: number }> = []

  constructor(capacity: number) {
    // Never a slice of Node's shared pool: free() tells the ring's bytes by their ArrayBuffer.
    this.#ring = Buffer.allocUnsafeSlow(capacity)
  }

  /** `size` bytes to write a batch into: in the ring when they fit, else a buffer of their own. */
  readonly alloc = (size: number): Buffer => {
    const start = this.#startFor(size)
    if (start === undefined) return Buffer.allocUnsafe(size)
    this.#spans.push({ start, end: start + size })
    return this.#ring.subarray(start, start + size)
  }

  /** The oldest batch still held is no longer needed (acknowledged); a buffer of its own is left to the collector. */
  free(bytes: Uint8Array): void {
    if (bytes.buffer !== this.#ring.buffer || bytes.length === 0) return
    const oldest = this.#spans[0]
    if (oldest?.start !== bytes.byteOffset - this.#ring.byteOffset) throw new Error('batch bytes freed out of the order they were taken')
    this.#spans.shift()
  }

  #startFor(size: number): number | undefined {
    const capacity = this.#ring.length
    if (size === 0 || size > capacity) return undefined
    const first = this.#spans[0]
    const last = this.#spans.at(-1)
    // Nothing held: from the start again, so that batches acknowledged as fast as they are sealed (a
    // steady trickle) keep writing the same first pages rather than touch the whole ring.
    if (!first || !last) return 0
    if (last.start >= first.start) {
      // Not wrapped: free space after the newest, then before the oldest.
      if (capacity - last.end >= size) return last.end
      return first.start >= size ? 0 : undefined
    }
    // Wrapped: the free space lies between the newest and the oldest.
    return first.start - last.end >= size ? last.end : undefined
  }
}
