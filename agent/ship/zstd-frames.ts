// zstd for request bodies through one long-lived stream: a frame per body, ended by
// a flush with ZSTD_e_end (the collector decompresses each body alone, as before).
// zlib's one-shot zstdCompress made a stream per request, with an output buffer of
// its own (1 MiB, the chunk size) and a copy of what it held: 1.4 MiB per request
// that outlived the young generation, so only a full collection freed it. This
// stream fills its output buffer body after body and makes a new one only when it
// is full; zlib never writes a filled part again, so a body is a view into it.
import { constants, createZstdCompress, type ZstdCompress } from 'node:zlib'

export class ZstdFrames {
  readonly #options: { chunkSize: number; level: number }
  #stream: ZstdCompress | undefined
  #chunks: Buffer[] = []
  #previous: Promise<unknown> = Promise.resolve()

  constructor(options: { chunkSize: number; level: number }) {
    this.#options = options
  }

  /** One zstd frame holding `body`; `body` must not change until it resolves. */
  compress(body: Uint8Array): Promise<Buffer> {
    // One frame at a time: a frame's output is what the stream gives until its flush.
    const frame = this.#previous.then(() => this.#frame(body))
    this.#previous = frame.catch(() => {})
    return frame
  }

  #frame(body: Uint8Array): Promise<Buffer> {
    const stream = (this.#stream ??= this.#open())
    return new Promise((resolve, reject) => {
      const failed = (err: Error) => reject(err)
      stream.once('error', failed)
      stream.write(body)
      stream.flush(constants.ZSTD_e_end, () => {
        stream.off('error', failed)
        const chunks = this.#chunks
        this.#chunks = []
        resolve(joined(chunks))
      })
    })
  }

  close(): void {
    this.#stream?.destroy()
    this.#stream = undefined
    this.#chunks = []
  }

  #open(): ZstdCompress {
    const stream = createZstdCompress({ chunkSize: this.#options.chunkSize, params: { [constants.ZSTD_c_compressionLevel]: this.#options.level } })
    stream.on('data', (chunk: Buffer) => this.#chunks.push(chunk))
    // A stream that failed is not used again: the next body starts a new one.
    stream.on('error', () => {
      if (this.#stream === stream) this.close()
    })
    return stream
  }
}

/** The chunks as one buffer: a view when they lie end to end in one output buffer (the usual case), else a copy. */
function joined(chunks: Buffer[]): Buffer {
  const first = chunks[0]
  if (first === undefined) return Buffer.alloc(0)
  let end = first.byteOffset + first.length
  for (let i = 1; i < chunks.length; i++) {
    const c = chunks[i]!
    if (c.buffer !== first.buffer || c.byteOffset !== end) return Buffer.concat(chunks)
    end += c.length
  }
  return Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset)
}
