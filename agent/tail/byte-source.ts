// Reads the bytes of one tracked file through a descriptor we hold, so that a
// rename, a gzip or a retention delete cannot take the data away mid-read.
// Plain files are read by offset; gzip backups are decompressed as a stream.
import type { FileHandle } from 'node:fs/promises'
import { createGunzip } from 'node:zlib'

export interface ByteSource {
  readonly gzip: boolean
  /**
   * Up to `maxBytes` bytes starting at `position` (in uncompressed bytes).
   * An empty buffer means nothing more right now. A gzip source only reads forward.
   * A plain file is read into `alloc(maxBytes)` when given (a buffer that is reused), once there is
   * something to read; a gzip source returns views into what it decompressed and ignores it.
   */
  read(position: number, maxBytes: number, alloc?: (size: number) => Buffer): Promise<Buffer>
  /** Current size for a plain file; undefined for gzip. */
  size(): Promise<number | undefined>
  close(): Promise<void>
}

export class PlainSource implements ByteSource {
  readonly gzip = false
  readonly #handle: FileHandle
  /** Size seen by the last fstat (a read at the end, or size()): spares a second fstat at the end of the file. */
  lastSize = 0

  constructor(handle: FileHandle) {
    this.#handle = handle
  }

  async size(): Promise<number> {
    this.lastSize = (await this.#handle.stat()).size
    return this.lastSize
  }

  async read(position: number, maxBytes: number, alloc?: (size: number) => Buffer): Promise<Buffer> {
    // Behind the size last seen, the bytes are known to be there: no fstat per read while catching up.
    // Only at that end is the size asked again, to see growth (and, by the caller, truncation).
    const known = this.lastSize - position > 0
    const available = known ? this.lastSize - position : (await this.size()) - position
    if (available <= 0) return Buffer.alloc(0)
    // Without a reused buffer, one sized to what is there: at a steady trickle a read is a few hundred bytes, not a fresh MiB.
    const buf = alloc?.(maxBytes) ?? Buffer.allocUnsafe(Math.min(available, maxBytes))
    const { bytesRead } = await this.#handle.read(buf, 0, Math.min(available, maxBytes, buf.length), position)
    // Nothing where the old size said there was: the file shrank. Measure it, so that the caller's
    // truncation check (which reads lastSize after an empty read) sees the size of now.
    if (bytesRead === 0 && known) await this.size()
    return buf.subarray(0, bytesRead)
  }

  async close(): Promise<void> {
    await this.#handle.close()
  }
}

export class GzipSource implements ByteSource {
  readonly gzip = true
  readonly #handle: FileHandle
  readonly #chunks: AsyncIterator<Buffer>
  #position = 0
  #carry: Buffer | undefined
  #done = false

  constructor(handle: FileHandle) {
    this.#handle = handle
    const gunzip = createGunzip({ chunkSize: 256 * 1024 })
    const raw = handle.createReadStream({ start: 0, autoClose: false, highWaterMark: 256 * 1024 })
    raw.on('error', (err) => gunzip.destroy(err))
    raw.pipe(gunzip)
    this.#chunks = gunzip[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  }

  async size(): Promise<undefined> {
    return undefined
  }

  async read(position: number, maxBytes: number): Promise<Buffer> {
    if (position < this.#position) throw new Error(`gzip source cannot seek back from ${this.#position} to ${position}`)
    while (!this.#done) {
      let chunk = this.#carry
      this.#carry = undefined
      if (!chunk) {
        const next = await this.#chunks.next()
        if (next.done) {
          this.#done = true
          break
        }
        chunk = next.value
      }
      const skip = position - this.#position
      if (skip >= chunk.length) {
        this.#position += chunk.length
        continue
      }
      const start = skip
      const end = Math.min(chunk.length, start + maxBytes)
      if (end < chunk.length) this.#carry = chunk.subarray(end)
      this.#position += end
      return chunk.subarray(start, end)
    }
    return Buffer.alloc(0)
  }

  async close(): Promise<void> {
    await this.#chunks.return?.()
    await this.#handle.close()
  }
}

/** The first `n` uncompressed bytes of a gzip file (fewer if it is shorter); used to fingerprint backups. */
export async function gzipHead(handle: FileHandle, n: number): Promise<Buffer> {
  const source = new GzipSource(handle)
  const parts: Buffer[] = []
  let got = 0
  try {
    while (got < n) {
      const piece = await source.read(got, n - got)
      if (piece.length === 0) break
      parts.push(piece)
      got += piece.length
    }
  } finally {
    await source.close()
  }
  return Buffer.concat(parts, got)
}
