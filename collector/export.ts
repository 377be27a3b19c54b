// Prints a stored stream's event lines in order, each exactly as shipped plus '\n'.
// Export reads the store as it is and checks only entry checksums: run
// `auditrail verify` to establish that the stream is intact.
//
// With `records: true`, everything that is not an event line is printed too, as
// a line of its own: the prefix `#auditrail ` and a JSON object. A '#' never
// starts an audit event, and a stored line that could be mistaken for such a
// line (an unparsed one) is always announced by one, so the output stays
// unambiguous:
//   #auditrail {"kind":"heartbeat","sequence":N,"createdUnixMs":T}                batch without records
//   #auditrail {"kind":"gap","sequence":N,"offset":O,"path":P,"fromOffset":F,"toOffset":T,"reason":R}
//   #auditrail {"kind":"quarantine","sequence":N,"offset":O,"length":L,"sha256":HEX,"reason":R,"storedAs":S}
//   #auditrail {"kind":"unparsed","sequence":N,"offset":O,"reason":R}              the next line is that record's line
//   #auditrail {"kind":"redacted","sequence":N,"offset":O,"paths":[...]}           the next line is that record's line
//   #auditrail {"kind":"finding","sequence":N,"offset":O,"source":S,"id":I,"severity":V,"message":M,"auditId":A,"details":{...}}
//                                                                                 a rule or detector finding about the next line
import type { Writable } from 'node:stream'
import { once } from 'node:events'
import { decodeBatch, decodeSealedBatch, type Batch } from '../proto/wire.ts'
import { reading } from './store/open.ts'
import type { BatchStore } from './store/store.ts'

export const RECORD_PREFIX = '#auditrail '
/** Output is gathered up to this size before a write, so that small lines do not each cost a write. */
const FLUSH_BYTES = 1024 * 1024

export class ExportError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ExportError'
  }
}

export interface ExportOptions {
  stream?: string
  records?: boolean
  out: Writable
}

export interface ExportSummary {
  stream: string
  batches: number
  lines: number
}

/** `store`: an open store, or a directory or URL to open for the export. */
export function exportStream(store: BatchStore | string, options: ExportOptions): Promise<ExportSummary> {
  return reading(store, (s) => exportFrom(s, options))
}

async function exportFrom(store: BatchStore, options: ExportOptions): Promise<ExportSummary> {
  const stream = await pickStream(store, options.stream)
  const pending: Buffer[] = []
  let pendingBytes = 0
  let batches = 0
  let lines = 0
  const push = (b: Buffer) => {
    pending.push(b)
    pendingBytes += b.length
  }
  const note = (o: Record<string, unknown>) => push(Buffer.from(`${RECORD_PREFIX}${JSON.stringify(o)}\n`))

  for await (const item of store.entries(stream)) {
    if (item.kind === 'empty') continue
    if (item.kind === 'bad') {
      // A live store's last entry may be still being written: a cut-short tail of the last segment is where
      // the stream ends for now (what a restarted collector would cut), not damage.
      if (item.torn && item.inLastSegment) break
      throw new ExportError(`stream ${stream}, segment ${item.place.segment}, byte ${item.place.offset}: ${item.reason}; run 'auditrail verify' on the store`)
    }
    const batch: Batch = decodeBatch(decodeSealedBatch(item.bytes).batch)
    batches++
    const sequence = batch.sequence
    if (options.records && batch.records.length === 0) note({ kind: 'heartbeat', sequence, createdUnixMs: batch.createdUnixMs })
    const findings = options.records ? Map.groupBy(batch.findings, (f) => f.recordIndex) : undefined
    for (const [index, r] of batch.records.entries()) {
      if (r.line) {
        for (const { recordIndex: _, ...f } of findings?.get(index) ?? []) note({ kind: 'finding', sequence, offset: r.offset, ...f })
        if (options.records && r.unparsedReason) note({ kind: 'unparsed', sequence, offset: r.offset, reason: r.unparsedReason })
        if (options.records && r.redactedPaths) note({ kind: 'redacted', sequence, offset: r.offset, paths: r.redactedPaths })
        push(Buffer.isBuffer(r.line) ? r.line : Buffer.from(r.line))
        push(NEWLINE)
        lines++
      } else if (options.records && r.gap) {
        note({ kind: 'gap', sequence, offset: r.offset, ...r.gap })
      } else if (options.records && r.quarantine) {
        const q = r.quarantine
        note({ kind: 'quarantine', sequence, offset: r.offset, length: q.length, sha256: Buffer.from(q.sha256).toString('hex'), reason: q.reason, storedAs: q.storedAs })
      }
    }
    if (pendingBytes >= FLUSH_BYTES) await flush()
  }
  await flush()
  return { stream, batches, lines }

  async function flush(): Promise<void> {
    if (pending.length === 0) return
    const chunk = Buffer.concat(pending, pendingBytes)
    pending.length = 0
    pendingBytes = 0
    if (!options.out.write(chunk)) await once(options.out, 'drain')
  }
}

const NEWLINE = Buffer.from('\n')

async function pickStream(store: BatchStore, wanted: string | undefined): Promise<string> {
  const streams = await store.streams()
  const name = store.name
  if (wanted !== undefined) {
    if (!streams.includes(wanted)) throw new ExportError(`no stream ${JSON.stringify(wanted)} in ${name} (streams: ${streams.join(', ') || 'none'})`)
    return wanted
  }
  if (streams.length === 1) return streams[0]!
  if (streams.length === 0) throw new ExportError(`${name} holds no streams (is it a collector store?)`)
  throw new ExportError(`${name} holds ${streams.length} streams; choose one with --stream: ${streams.join(', ')}`)
}
