// The buffers the plain files are read into, reused. A record's bytes are a view into
// the buffer they were read into, so a buffer is read into again only once its reader
// says nothing read is held any more (the agent encodes a chunk's lines into its batch
// before the next read). A new buffer per read of 256 KiB outlived the young generation,
// so only a full collection freed it: 164 MB of them for the real log x5, and V8 starts
// a full collection only each time external memory has grown by 64 MiB.

/** Buffers remembered as lent: past this many unreleased, the oldest is left to the garbage collector. */
const MAX_LENT = 64

export class ReadBuffers {
  readonly #size: number
  readonly #keep: number
  readonly #free: Buffer[] = []
  /** Buffers handed out and not yet released. */
  readonly #lent: Buffer[] = []

  /** Buffers of `size` bytes; at most `keep` are kept for reuse (more are made when more are held, and dropped when released). */
  constructor(size: number, keep: number) {
    this.#size = size
    this.#keep = keep
  }

  /** A buffer for the next read; it is the caller's until `release`. */
  take(): Buffer {
    const buffer = this.#free.pop() ?? Buffer.allocUnsafe(this.#size)
    // A caller that holds many reads (or never releases) gets buffers of their own: the oldest is forgotten, not reused.
    if (this.#lent.length >= MAX_LENT) this.#lent.shift()
    this.#lent.push(buffer)
    return buffer
  }

  /** Nothing read into the buffers handed out so far is held any more. */
  release(): void {
    for (const buffer of this.#lent.splice(0)) if (this.#free.length < this.#keep) this.#free.push(buffer)
  }
}
