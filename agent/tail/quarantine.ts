// Lines over the length limit are kept on the node, not shipped: the batch gets a
// record with the line's length and SHA-256, and the bytes land here. The store
// is bounded; past its bound the bytes are not kept but the record still ships.
import { createHash, type Hash } from 'node:crypto'
import { closeSync, mkdirSync, openSync, readdirSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import type { Quarantine } from '../../proto/wire.ts'

export interface QuarantineWriter {
  write(bytes: Uint8Array): void
  end(): Quarantine
}

export interface QuarantineStore {
  begin(offset: number, source: string): QuarantineWriter
}

/** Writes are synchronous on purpose: this path is rare and must not reorder with the tail. */
export class QuarantineDirectory implements QuarantineStore {
  readonly #dir: string
  readonly #maxBytes: number
  #usedBytes: number
  #serial = 0

  constructor(dir: string, maxBytes: number) {
    this.#dir = dir
    this.#maxBytes = maxBytes
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    this.#usedBytes = 0
    for (const name of readdirSync(dir)) {
      const path = join(dir, name)
      if (name.endsWith('.partial')) unlinkSync(path) // left by a crash mid-line; the line is re-read
      else this.#usedBytes += statSync(path).size
    }
  }

  begin(offset: number, source: string): QuarantineWriter {
    const hash: Hash = createHash('sha256')
    const tmp = join(this.#dir, `${process.pid}-${++this.#serial}.partial`)
    let fd: number | undefined = this.#usedBytes < this.#maxBytes ? openSync(tmp, 'w', 0o600) : undefined
    let length = 0
    let kept = true
    return {
      write: (bytes) => {
        hash.update(bytes)
        length += bytes.length
        if (fd === undefined) return
        if (this.#usedBytes + length > this.#maxBytes) {
          closeSync(fd)
          unlinkSync(tmp)
          fd = undefined
          kept = false
          return
        }
        writeSync(fd, bytes)
      },
      end: () => {
        const sha256 = hash.digest()
        let storedAs = ''
        if (fd !== undefined) {
          closeSync(fd)
          storedAs = join(this.#dir, `${sha256.toString('hex')}.line`)
          renameSync(tmp, storedAs)
          this.#usedBytes += length
        } else {
          kept = false
        }
        const reason = kept
          ? `line of ${length} bytes at ${source} offset ${offset} is over the line limit`
          : `line of ${length} bytes at ${source} offset ${offset} is over the line limit; not kept: the quarantine directory is full`
        return { length, sha256, reason, storedAs }
      },
    }
  }
}
