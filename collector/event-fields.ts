// What either query index stores of one event: the fields queries filter on, taken from the
// event line as stored, and where the line lies in the bytes of its batch. The SQLite index
// beside a directory store (index.ts) and the PostgreSQL index (store/postgres-index.ts) both
// index a batch from eventRows, so that they hold the same rows and give the same answers.
import { severityRank, type Batch } from '../proto/wire.ts'
import { parseAuditLine } from '../shared/audit-line.ts'

export interface EventFields {
  time: number
  user: string | null
  impersonated: string | null
  sourceIp: string | null
  verb: string | null
  resource: string | null
  subresource: string | null
  apiGroup: string | null
  namespace: string | null
  name: string | null
  code: number | null
  auditId: string | null
  stage: string | null
  groups: string[]
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null)

/** The indexed fields of one event line, or undefined for a line that is not a JSON object. */
export function eventFields(line: Uint8Array, fallbackTime: number): EventFields | undefined {
  // No indexed field is in the response body: half the bytes of a real log, not parsed.
  const value = parseAuditLine(Buffer.from(line.buffer, line.byteOffset, line.byteLength))?.value
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined
  const e = value as Record<string, unknown>
  const user = (e.user ?? {}) as Record<string, unknown>
  const impersonated = (e.impersonatedUser ?? {}) as Record<string, unknown>
  const ref = e.objectRef as Record<string, unknown> | undefined
  const status = e.responseStatus as Record<string, unknown> | undefined
  const ips = Array.isArray(e.sourceIPs) ? e.sourceIPs : []
  // Only a time that can be printed is indexed (a batch's created_unix_ms is any int64 its signer chose):
  // an event with none sorts at the Unix epoch rather than break every page that holds it.
  const time = parseTime(e.stageTimestamp) ?? parseTime(e.requestReceivedTimestamp) ?? (isRenderableTime(fallbackTime) ? fallbackTime : 0)
  return {
    time,
    user: str(user.username),
    impersonated: str(impersonated.username),
    sourceIp: str(ips[0]),
    verb: str(e.verb),
    resource: ref ? str(ref.resource) : null,
    subresource: ref ? str(ref.subresource) : null,
    // The core group has no apiGroup in the event: it is indexed as '' so that it can be asked for.
    apiGroup: ref ? (str(ref.apiGroup) ?? '') : null,
    namespace: ref ? str(ref.namespace) : null,
    name: ref ? str(ref.name) : null,
    code: status && typeof status.code === 'number' && Number.isSafeInteger(status.code) ? status.code : null,
    auditId: str(e.auditID),
    stage: str(e.stage),
    groups: Array.isArray(user.groups) ? [...new Set(user.groups.filter((g): g is string => typeof g === 'string'))] : [],
  }
}

function parseTime(v: unknown): number | undefined {
  if (typeof v !== 'string') return undefined
  const ms = Date.parse(v)
  return isRenderableTime(ms) ? ms : undefined
}

/** Largest distance from the Unix epoch a Date holds (ECMA-262 21.4.1.22): past it, toISOString throws. */
const MAX_DATE_MS = 8.64e15

/** A whole number of ms that a Date can hold and print. */
export function isRenderableTime(ms: number): boolean {
  return Number.isSafeInteger(ms) && Math.abs(ms) <= MAX_DATE_MS
}

/** Byte offset of a record's line inside the bytes it was decoded from (a SealedBatch, or its Batch). */
export function linePosition(entry: Buffer, line: Uint8Array): number {
  // protobufjs hands out views of the buffer it decoded: the position is the view's offset.
  if (line.buffer === entry.buffer) {
    const at = line.byteOffset - entry.byteOffset
    if (at >= 0 && at + line.length <= entry.length) return at
  }
  const at = entry.indexOf(line)
  if (at < 0) throw new Error('a record line is not inside its entry\'s bytes')
  return at
}

/** One indexed event of a batch: its record index, fields, line position and findings. */
export interface EventRow {
  record: number
  fields: EventFields
  /** Byte offset of the line in `bytes` as given to eventRows, and its length. */
  position: number
  length: number
  findings: Batch['findings']
  /** Highest finding severity (0 info .. 4 critical), null without findings. */
  severity: number | null
}

/**
 * The events of a decoded batch that an index holds: record lines that parsed as JSON objects
 * (gaps, heartbeats, quarantined and unparsed records are not events). `bytes` is what the
 * batch was decoded from: the line positions are offsets into it.
 */
export function* eventRows(b: Pick<Batch, 'createdUnixMs' | 'records' | 'findings'>, bytes: Buffer): Generator<EventRow> {
  const byRecord = new Map<number, Batch['findings']>()
  for (const f of b.findings) {
    const list = byRecord.get(f.recordIndex)
    if (list) list.push(f)
    else byRecord.set(f.recordIndex, [f])
  }
  for (let i = 0; i < b.records.length; i++) {
    const r = b.records[i]!
    if (!r.line || r.unparsedReason) continue
    const fields = eventFields(r.line, b.createdUnixMs)
    if (!fields) continue
    const findings = byRecord.get(i) ?? []
    const severity = findings.length > 0 ? Math.max(...findings.map((f) => severityRank(f.severity))) : null
    yield { record: i, fields, position: linePosition(bytes, r.line), length: r.line.length, findings, severity }
  }
}
