// The buffers the live and plain files are read into, reused. Lines are views into
// the buffer they were read into until their batch is sealed (the sealed bytes are a
// copy), so a buffer goes back to the pool only when its reader says that nothing read
// into it is held any more. A new buffer per read outlived the young generation (it
// waits in an open batch), so only a full collection freed it: 164 MB of them for the
// real log x5, and V8 starts a full collection only each time external memory has
// grown by 64 MiB.

/** Reads remembered as lent: past this many unreleased, the oldest is left to the garbage collector. */
const MAX_LENT = 64

export class ReadBuffers {
  readonly #size: number
  readonly #keep: number
  readonly #free: Buffer[] = []
  /** Buffers handed out and not yet released, oldest first, with the number of the read that took each. */
  readonly #lent: Array<{ read: number; buffer: Buffer }> = []
  #reads = 0

  /** Buffers of `size` bytes; at most `keep` are kept for reuse (more are made when more are held, and dropped when released). */
  constructor(size: number, keep: number) {
    this.#size = size
    this.#keep = keep
  }

  /** Number of the last read (0 before any): what `release` is given. */
  get reads(): number {
    return this.#reads
  }

  /** A buffer for the next read, and its number; it is the caller's until released. */
  take(): { read: number; buffer: Buffer } {
    const lent = { read: ++this.#reads, buffer: this.#free.pop() ?? Buffer.allocUnsafe(this.#size) }
    // A caller that holds many reads (or never releases) gets buffers of their own: the oldest is forgotten, not reused.
    if (this.#lent.length >= MAX_LENT) this.#lent.shift()
    this.#lent.push(lent)
    return lent
  }

  /** Nothing read into the buffers of reads before `read` (a number from `take`) is held any more. */
  release(read: number): void {
    let n = 0
    while (n < this.#lent.length && this.#lent[n]!.read < read) n++
    for (const { buffer } of this.#lent.splice(0, n)) if (this.#free.length < this.#keep) this.#free.push(buffer)
  }
}
