// What the SQLite index reads of a stored entry (a SealedBatch as the store wrote it), decoded by
// hand: its batch's sequence and time, its records' lines and its findings, nothing else. The
// collector decoded and checked every batch (decodeBatch, with its limits) before storing it, so
// this walks bytes already known to be a valid Batch. Measured on the real apiserver log: 2.2 µs an
// event with decodeSealedBatch + decodeBatch (protobufjs: every field, strings checked, limits
// counted first), against ~0.5 µs here; the index worker pays it for every batch.
import { decodeBatch, decodeSealedBatch, type Batch, type Finding, type WireRecord } from '../proto/wire.ts'

/** The parts of a Batch that the index reads (eventRows and the sequence check). */
export type IndexedFields = Pick<Batch, 'sequence' | 'createdUnixMs' | 'records' | 'findings'>

const VARINT = 0
const I64 = 1
const LEN = 2
const START_GROUP = 3
const END_GROUP = 4
const I32 = 5
/** Deeper than protobufjs's limit (100), which every stored batch has passed. */
const MAX_GROUP_DEPTH = 128

/** A cursor over protobuf bytes; `end` bounds the message being read. */
class Reader {
  readonly buf: Buffer
  pos: number
  end: number
  /** The high 32 bits of the last varint read by varint(). */
  hi = 0

  constructor(buf: Buffer, pos: number, end: number) {
    if (end > buf.length) throw new RangeError('message runs past its bytes')
    this.buf = buf
    this.pos = pos
    this.end = end
  }

  /** A varint's low 32 bits (unsigned); its high bits are left in `hi`. */
  varint(): number {
    const buf = this.buf
    let lo = 0
    let hi = 0
    let shift = 0
    let b: number
    do {
      if (this.pos >= this.end) throw new RangeError('varint runs past its message')
      b = buf[this.pos++]!
      if (shift < 28) lo |= (b & 0x7f) << shift
      else if (shift === 28) {
        lo |= (b & 0x0f) << 28
        hi = (b & 0x70) >> 4
      } else if (shift < 64) hi |= (b & 0x7f) << (shift - 32)
      shift += 7
    } while (b & 0x80)
    this.hi = hi >>> 0
    return lo >>> 0
  }

  uint64(): number {
    const lo = this.varint()
    return this.hi * 0x100000000 + lo
  }

  int64(): number {
    const lo = this.varint()
    const hi = this.hi
    // Two's complement: a negative int64 has its top bit set.
    return hi & 0x80000000 ? -((~hi >>> 0) * 0x100000000 + (~lo >>> 0) + 1) : hi * 0x100000000 + lo
  }

  /** The bounds of a length-delimited field's bytes; the cursor moves past them. */
  span(): number {
    const length = this.varint()
    const start = this.pos
    this.pos += length
    if (this.pos > this.end) throw new RangeError('field runs past its message')
    return start
  }

  string(): string {
    const start = this.span()
    return this.buf.toString('utf8', start, this.pos)
  }

  /**
   * Moves past a field the index does not read, as protobufjs does: a group (deprecated, but a
   * decoder accepts one) up to the end tag of its own field number, its fields skipped in turn.
   */
  skip(tag: number, depth = 0): void {
    const wireType = tag & 7
    if (wireType === VARINT) this.varint()
    else if (wireType === I64) this.pos += 8
    else if (wireType === LEN) this.span()
    else if (wireType === I32) this.pos += 4
    else if (wireType === START_GROUP) {
      if (depth > MAX_GROUP_DEPTH) throw new RangeError('groups nested too deep')
      for (;;) {
        const inner = this.varint()
        if ((inner & 7) !== END_GROUP) this.skip(inner, depth + 1)
        else if (inner >>> 3 === tag >>> 3) break
        else throw new RangeError('a group ends with the end tag of another field')
      }
    } else throw new RangeError(`wire type ${wireType} not expected`)
    if (this.pos > this.end) throw new RangeError('field runs past its message')
  }
}

/**
 * The index's fields of a stored entry: read by hand, or by decodeBatch when the hand reader
 * meets bytes it does not expect. The collector stored the entry because decodeBatch took it,
 * so decodeBatch's reading is the one that counts; a hostile signed batch found bytes (wire types
 * 3 and 7 in server-fuzz) that stopped the hand reader and, with it, the stream's index.
 */
export function indexedFieldsOf(entry: Buffer): IndexedFields {
  try {
    return decodeIndexedEntry(entry)
  } catch {
    return decodeBatch(decodeSealedBatch(entry).batch)
  }
}

/**
 * The index's fields of a stored entry. Fields are told apart by number alone, as protobufjs's
 * decoder (decodeBatch) does. Lines are views into `entry` (the line positions are
 * taken from them). Fields repeat as protobuf says: the last of a scalar wins, a map's last entry
 * for a key wins; a record holds a line when any of its `line` fields is present (decodeBatch's rule).
 */
export function decodeIndexedEntry(entry: Buffer): IndexedFields {
  const sealed = new Reader(entry, 0, entry.length)
  let batchStart = -1
  let batchEnd = -1
  while (sealed.pos < sealed.end) {
    const tag = sealed.varint()
    if (tag >>> 3 === 1) {
      batchStart = sealed.span()
      batchEnd = sealed.pos
    } else sealed.skip(tag)
  }
  if (batchStart < 0) throw new RangeError('the entry holds no batch')
  const r = new Reader(entry, batchStart, batchEnd)
  const out: IndexedFields = { sequence: 0, createdUnixMs: 0, records: [], findings: [] }
  while (r.pos < r.end) {
    const tag = r.varint()
    switch (tag >>> 3) {
      case 2:
        out.sequence = r.uint64()
        break
      case 4:
        out.createdUnixMs = r.int64()
        break
      case 7: {
        const start = r.span()
        out.records.push(record(entry, start, r.pos))
        break
      }
      case 8: {
        const start = r.span()
        out.findings.push(finding(entry, start, r.pos))
        break
      }
      default:
        r.skip(tag)
    }
  }
  return out
}

function record(buf: Buffer, start: number, end: number): WireRecord {
  const r = new Reader(buf, start, end)
  const out: WireRecord = { offset: 0 }
  while (r.pos < r.end) {
    const tag = r.varint()
    const field = tag >>> 3
    if (field === 1) out.offset = r.uint64()
    else if (field === 2) {
      const from = r.span()
      out.line = buf.subarray(from, r.pos)
    } else if (field === 5) {
      const reason = r.string()
      if (reason) out.unparsedReason = reason
      else delete out.unparsedReason
    } else r.skip(tag)
  }
  return out
}

function finding(buf: Buffer, start: number, end: number): Finding {
  const r = new Reader(buf, start, end)
  const out = { recordIndex: 0, source: '', id: '', severity: '', message: '', auditId: '', details: {} as Record<string, string> }
  while (r.pos < r.end) {
    const tag = r.varint()
    switch (tag >>> 3) {
      case 1:
        out.recordIndex = r.varint()
        break
      case 2:
        out.source = r.string()
        break
      case 3:
        out.id = r.string()
        break
      case 4:
        out.severity = r.string()
        break
      case 5:
        out.message = r.string()
        break
      case 6:
        out.auditId = r.string()
        break
      case 7: {
        const from = r.span()
        const e = new Reader(buf, from, r.pos)
        let key = ''
        let value = ''
        while (e.pos < e.end) {
          const t = e.varint()
          if (t >>> 3 === 1) key = e.string()
          else if (t >>> 3 === 2) value = e.string()
          else e.skip(t)
        }
        out.details[key] = value
        break
      }
      default:
        r.skip(tag)
    }
  }
  return out as Finding
}
