// Splits a byte stream into lines without copying: a line is a view into the
// chunk it was read in, unless it spans chunks (the piece left at the end of a
// chunk is copied: the tailer reads into that buffer again). A line longer than
// the limit never sits in memory whole: its bytes stream to the quarantine as they come.
import type { Quarantine } from '../../proto/wire.ts'
import type { QuarantineStore, QuarantineWriter } from './quarantine.ts'

const NEWLINE = 0x0a

export type SplitRecord =
  | { kind: 'line'; offset: number; bytes: Buffer; /** cut short: the file ended without its newline */ incomplete?: true }
  | { kind: 'quarantine'; offset: number; quarantine: Quarantine }

export class LineSplitter {
  readonly #maxLineBytes: number
  readonly #quarantine: QuarantineStore
  readonly #describeSource: () => string
  /** Pieces of a line that has not ended yet. */
  #pending: Buffer[] = []
  #pendingBytes = 0
  #oversize: QuarantineWriter | undefined
  /** File offset of the first byte not yet returned as part of a record. */
  #lineStart: number

  constructor(options: { maxLineBytes: number; quarantine: QuarantineStore; startOffset: number; describeSource: () => string }) {
    this.#maxLineBytes = options.maxLineBytes
    this.#quarantine = options.quarantine
    this.#lineStart = options.startOffset
    this.#describeSource = options.describeSource
  }

  /** Offset where the next record begins: a safe resume point. */
  get committedOffset(): number {
    return this.#lineStart
  }

  get hasPartialLine(): boolean {
    return this.#pendingBytes > 0 || this.#oversize !== undefined
  }

  /** Feeds the next bytes of the file; appends every completed record to `out`. */
  feed(chunk: Buffer, out: SplitRecord[]): void {
    let pos = 0
    while (pos < chunk.length) {
      const nl = chunk.indexOf(NEWLINE, pos)
      const end = nl === -1 ? chunk.length : nl
      const piece = chunk.subarray(pos, end)
      if (this.#oversize) {
        this.#oversize.write(piece)
      } else if (this.#pendingBytes + piece.length > this.#maxLineBytes) {
        this.#oversize = this.#quarantine.begin(this.#lineStart, this.#describeSource())
        for (const p of this.#pending) this.#oversize.write(p)
        this.#oversize.write(piece)
        this.#pending = []
        this.#pendingBytes = 0
      } else if (nl !== -1 && this.#pendingBytes === 0) {
        out.push({ kind: 'line', offset: this.#lineStart, bytes: piece })
        this.#lineStart += piece.length + 1
        pos = end + 1
        continue
      } else {
        this.#pending.push(nl === -1 ? Buffer.from(piece) : piece)
        this.#pendingBytes += piece.length
      }
      if (nl === -1) break
      this.#endLine(out, 1)
      pos = end + 1
    }
  }

  /** The file will not grow any more: whatever is pending becomes a last, incomplete record. */
  flush(out: SplitRecord[]): boolean {
    if (!this.hasPartialLine) return false
    this.#endLine(out, 0)
    return true
  }

  #endLine(out: SplitRecord[], newlineBytes: number): void {
    if (this.#oversize) {
      const quarantine = this.#oversize.end()
      out.push({ kind: 'quarantine', offset: this.#lineStart, quarantine })
      this.#lineStart += quarantine.length + newlineBytes
      this.#oversize = undefined
      return
    }
    const bytes = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending, this.#pendingBytes)
    out.push(newlineBytes === 0 ? { kind: 'line', offset: this.#lineStart, bytes, incomplete: true } : { kind: 'line', offset: this.#lineStart, bytes })
    this.#lineStart += this.#pendingBytes + newlineBytes
    this.#pending = []
    this.#pendingBytes = 0
  }
}
