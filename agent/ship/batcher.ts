// Groups records into batch drafts: one file per batch, closed when it holds
// enough events or bytes, when it has waited long enough, or when its file
// ends. A record and its findings are encoded into the draft's body as they
// are added (proto/wire.ts BatchBody): the read buffer is free once a chunk is added.
import { BatchBody, type Finding, type WireRecord } from '../../proto/wire.ts'
import type { TailChunk, TailPosition, TailRecord } from '../tail/tailer.ts'
import type { BatchDraft } from './sealer.ts'

/** A tail record turned into what ships: the wire record and its findings. */
export interface ProcessedRecord {
  record: WireRecord
  findings: Omit<Finding, 'recordIndex'>[]
  /** Event time (eventTimeMs: stageTimestamp, else requestReceivedTimestamp), Unix ms; 0 when unknown. */
  eventMs: number
}

export interface BatchLimits {
  maxEvents: number
  maxBytes: number
  maxWaitMs: number
}

export class Batcher {
  readonly #limits: BatchLimits
  #draft: BatchDraft | undefined
  /** Bodies of sealed drafts, for the next drafts (recycle). */
  readonly #bodies: BatchBody[] = []
  /** Where the last closed draft ended: an end-of-file already recorded needs no second marker. */
  #last: { inode: number; device: number; offset: number; endOfFile: boolean } | undefined

  constructor(limits: BatchLimits, resumeFrom: TailPosition | undefined) {
    this.#limits = limits
    if (resumeFrom) this.#last = { inode: resumeFrom.identity.inode, device: resumeFrom.identity.device, offset: resumeFrom.offset, endOfFile: resumeFrom.endOfFile }
  }

  /** performance.now() when the open draft got its first record; undefined when none is open. */
  get openedAt(): number | undefined {
    return this.#draft?.openedAt
  }

  /** Adds a chunk; drafts closed on the way are appended to `out`. */
  add(chunk: TailChunk, process: (r: TailRecord) => ProcessedRecord, nowMs: number, out: BatchDraft[]): void {
    let draft = this.#draft
    if (draft && !continues(draft, chunk)) {
      this.#close(out)
      draft = undefined
    }
    const records = chunk.records
    for (let i = 0; i < records.length; i++) {
      const tailRecord = records[i]!
      if (!draft) draft = this.#open(chunk, tailRecord.offset, nowMs)
      const { record, findings, eventMs } = process(tailRecord)
      const body = draft.body
      const index = body.recordCount
      body.addRecord(record)
      for (const f of findings) body.addFinding({ ...f, recordIndex: index })
      draft.lineBytes += record.line?.length ?? 0
      if (eventMs > draft.newestEventMs) draft.newestEventMs = eventMs
      if (body.recordCount >= this.#limits.maxEvents || draft.lineBytes >= this.#limits.maxBytes) {
        const next = records[i + 1]
        draft.endOffset = next ? next.offset : chunk.endOffset
        draft.endOfFile = !next && chunk.endOfFile
        this.#close(out)
        draft = undefined
      }
    }
    if (draft) {
      draft.endOffset = chunk.endOffset
      draft.identity = chunk.identity
      if (chunk.endOfFile) {
        draft.endOfFile = true
        this.#close(out)
      }
    } else if (chunk.endOfFile && records.length === 0 && !this.#recordedEnd(chunk)) {
      // The file ended after its last batch was closed: an empty batch records the end, so a restart moves on.
      this.#open(chunk, chunk.endOffset, nowMs).endOfFile = true
      this.#close(out)
    }
  }

  /** Closes the open draft if it has waited `maxWaitMs` (or at once with `force`). */
  takeDue(nowMs: number, out: BatchDraft[], force = false): void {
    if (this.#draft && (force || nowMs - this.#draft.openedAt >= this.#limits.maxWaitMs)) this.#close(out)
  }

  /**
   * An empty batch at `position`: proof of life when nothing new was read.
   * Without a position (no log file yet) it names the configured path.
   */
  heartbeat(position: TailPosition | string, nowMs: number): BatchDraft {
    if (typeof position === 'string') return { ...this.#empty(position, NO_FILE, { liveAfter: 0 }, 0, nowMs), noFile: true }
    return this.#empty(position.path, position.identity, position.order, position.offset, nowMs)
  }

  /** A draft is sealed (its bytes copied): its body's storage serves a next draft. */
  recycle(draft: BatchDraft): void {
    draft.body.clear()
    if (this.#bodies.length < BODIES_KEPT) this.#bodies.push(draft.body)
  }

  #open(chunk: TailChunk, startOffset: number, nowMs: number): BatchDraft {
    this.#draft = this.#empty(chunk.path, chunk.identity, chunk.order, startOffset, nowMs)
    return this.#draft
  }

  #empty(path: string, identity: BatchDraft['identity'], order: BatchDraft['order'], offset: number, nowMs: number): BatchDraft {
    const body = this.#bodies.pop() ?? new BatchBody()
    return { path, identity, order, startOffset: offset, endOffset: offset, endOfFile: false, body, lineBytes: 0, newestEventMs: 0, openedAt: nowMs }
  }

  #close(out: BatchDraft[]): void {
    const d = this.#draft!
    this.#draft = undefined
    this.#last = { inode: d.identity.inode, device: d.identity.device, offset: d.endOffset, endOfFile: d.endOfFile }
    out.push(d)
  }

  #recordedEnd(chunk: TailChunk): boolean {
    const l = this.#last
    return l !== undefined && l.endOfFile && l.inode === chunk.identity.inode && l.device === chunk.identity.device && l.offset === chunk.endOffset
  }
}

const NO_FILE = { device: 0, inode: 0, fingerprint: Buffer.alloc(0), fingerprintLength: 0 }
/** Bodies kept for reuse: the open draft's, and one closed beside it. */
const BODIES_KEPT = 2

/** Same file, and the chunk starts where the draft ends (a truncated file restarts at 0: a new batch). */
function continues(draft: BatchDraft, chunk: TailChunk): boolean {
  return draft.identity.inode === chunk.identity.inode && draft.identity.device === chunk.identity.device && draft.path === chunk.path && draft.endOffset === chunk.startOffset
}
