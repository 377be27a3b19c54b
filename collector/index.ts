// The query index: an SQLite file (node:sqlite, WAL) beside the segments.
// The segments stay the evidence; a row here only says where an event's line
// lies in them (stream, batch sequence, record index, segment, byte position)
// and copies the fields that queries filter on. The index can always be
// dropped and rebuilt from the segments (`auditrail collector reindex`).
//
// Each batch is indexed in one transaction together with its stream's
// `indexed_sequence`, so the index is never half a batch ahead or behind: on
// start the collector continues from `indexed_sequence + 1` of every stream.
// A live collector writes the index from a worker thread (index-worker.ts,
// started by live-indexer.ts) and answers queries from a read-only connection.
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite'
import { existsSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { severityRank } from '../proto/wire.ts'
import { eventRows } from './event-fields.ts'
import { indexedFieldsOf } from './index-batch.ts'
import { ENTRY_HEADER_BYTES, listSegments, listStreams, readSegment } from './store/file-store.ts'
import { StoreError } from './store/store.ts'

export const INDEX_FILE = 'index.sqlite'
/** Bumped whenever the schema or what is indexed changes: an index of another version is rebuilt. */
export const INDEX_SCHEMA_VERSION = '4'

export class IndexError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'IndexError'
  }
}

// Values that repeat (users, groups, IPs, verbs, resources, namespaces, stages) are stored once in
// `terms` and referred to by number: measured, this halves the index (and its inserts get faster).
// Names and audit IDs are nearly all distinct and stay text. The view `events_view` shows them resolved.
const TABLES = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS streams (stream TEXT PRIMARY KEY, indexed_sequence INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS terms (id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE) STRICT;
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY,
  time INTEGER NOT NULL,              -- stageTimestamp, Unix ms
  stream TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  record INTEGER NOT NULL,            -- index in Batch.records
  segment INTEGER NOT NULL,           -- first sequence of the segment file (its name)
  entry_offset INTEGER NOT NULL,      -- byte offset of the batch's entry in that file
  line_position INTEGER NOT NULL,     -- byte offset of the event line in that file
  line_length INTEGER NOT NULL,
  user INTEGER, impersonated_user INTEGER, source_ip INTEGER, verb INTEGER, resource INTEGER, subresource INTEGER,
  api_group INTEGER, namespace INTEGER, name TEXT, code INTEGER, audit_id TEXT, stage INTEGER,   -- INTEGER: terms.id
  audit_key INTEGER,                  -- auditKey(audit_id): what the audit ID index holds
  severity INTEGER                    -- highest finding severity (0 info .. 4 critical), NULL without findings
) STRICT;
-- Keyed by group first: the only question asked of it is "events of this group".
CREATE TABLE IF NOT EXISTS event_groups (grp INTEGER NOT NULL, event INTEGER NOT NULL, PRIMARY KEY (grp, event)) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS findings (
  event INTEGER NOT NULL, n INTEGER NOT NULL, time INTEGER NOT NULL,
  finding_id TEXT NOT NULL, severity INTEGER NOT NULL, source TEXT NOT NULL, message TEXT NOT NULL,
  grp TEXT,                           -- the finding's group (details.group), NULL for a finding that names none
  PRIMARY KEY (event, n)
) STRICT, WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS events_view AS SELECT e.id, e.time, e.stream, e.sequence, e.record, e.segment, e.entry_offset, e.line_position, e.line_length,
  (SELECT term FROM terms WHERE id = e.user) AS user, (SELECT term FROM terms WHERE id = e.impersonated_user) AS impersonated_user,
  (SELECT term FROM terms WHERE id = e.source_ip) AS source_ip, (SELECT term FROM terms WHERE id = e.verb) AS verb,
  (SELECT term FROM terms WHERE id = e.resource) AS resource, (SELECT term FROM terms WHERE id = e.subresource) AS subresource,
  (SELECT term FROM terms WHERE id = e.api_group) AS api_group, (SELECT term FROM terms WHERE id = e.namespace) AS namespace,
  e.name, e.code, e.audit_id, (SELECT term FROM terms WHERE id = e.stage) AS stage, e.severity
  FROM events e;
`
// Audit IDs are random: every insert lands on another page of their index. Indexed as a 48-bit hash
// (8 bytes instead of 36 characters), that index stays small enough for the page cache; measured at
// 300,000 events, indexing the text made a batch twice as slow and growing, the hash keeps it flat.
// Secondary indexes: one per field that narrows a query a lot, each ending in time for the
// result order. Verb, code, stage, subresource and API group narrow little: a scan in time order
// with them as filters finds a page soon enough, and each index costs every insert (measured:
// about 2 ms per 800-event batch each). A rebuild creates these after loading (much faster than growing them).
const INDEXES = `
CREATE INDEX IF NOT EXISTS events_order ON events (time, stream, sequence, record);
CREATE INDEX IF NOT EXISTS events_user ON events (user, time);
CREATE INDEX IF NOT EXISTS events_impersonated ON events (impersonated_user, time) WHERE impersonated_user IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_source_ip ON events (source_ip, time);
CREATE INDEX IF NOT EXISTS events_object ON events (resource, name, time);
CREATE INDEX IF NOT EXISTS events_namespace ON events (namespace, time);
CREATE INDEX IF NOT EXISTS events_audit_key ON events (audit_key);
CREATE INDEX IF NOT EXISTS events_severity ON events (severity, time) WHERE severity IS NOT NULL;
CREATE INDEX IF NOT EXISTS findings_id ON findings (finding_id, time);
CREATE INDEX IF NOT EXISTS findings_severity ON findings (severity, time);
CREATE INDEX IF NOT EXISTS findings_group ON findings (grp, time) WHERE grp IS NOT NULL;
`

const TERM_CACHE = 200_000

/** Rows one INSERT takes at most. */
const ROWS_PER_INSERT = 64

/**
 * Rows of one table, inserted many a statement. OR FAIL: a failing row fails the batch's
 * transaction anyway, so SQLite need not keep a statement journal to undo only that statement
 * (with OR ABORT, the default, a multi-row INSERT writes one, and was slower than a row a statement).
 */
class RowInserter {
  readonly #db: DatabaseSync
  readonly #into: string
  readonly #columns: number
  /** By number of rows, a power of two: a batch's last rows go in a few statements, and few are prepared. */
  readonly #statements = new Map<number, StatementSync>()
  #values: SQLInputValue[] = []

  constructor(db: DatabaseSync, into: string, columns: number) {
    this.#db = db
    this.#into = into
    this.#columns = columns
  }

  add(...row: SQLInputValue[]): void {
    for (const v of row) this.#values.push(v)
    if (this.#values.length === ROWS_PER_INSERT * this.#columns) this.flush()
  }

  flush(): void {
    const values = this.#values
    this.#values = []
    for (let at = 0; at < values.length;) {
      const rows = 2 ** Math.floor(Math.log2((values.length - at) / this.#columns))
      const end = at + rows * this.#columns
      this.#statement(rows).run(...values.slice(at, end))
      at = end
    }
  }

  /** Drops the rows not yet inserted (after a rollback). */
  clear(): void {
    this.#values = []
  }

  #statement(rows: number): StatementSync {
    let statement = this.#statements.get(rows)
    if (!statement) {
      const row = `(${Array.from({ length: this.#columns }, () => '?').join(', ')})`
      statement = this.#db.prepare(`INSERT OR FAIL INTO ${this.#into} VALUES ${Array.from({ length: rows }, () => row).join(', ')}`)
      this.#statements.set(rows, statement)
    }
    return statement
  }
}

/** A 48-bit hash of an audit ID (two FNV-1a lanes): the key of the audit ID index; the text is compared after. */
export function auditKey(id: string): number {
  let a = 0x811c9dc5
  let b = 0x01000193 ^ id.length
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i)
    a = Math.imul(a ^ c, 0x01000193)
    b = Math.imul(b ^ c, 0x5bd1e995)
  }
  return (a >>> 0) * 0x10000 + ((b >>> 16) & 0xffff)
}

/** Where a batch's entry lies: the segment (by its first sequence) and the entry's byte offset. */
export interface EntryLocation {
  segment: number
  offset: number
}

export interface IndexedBatch {
  events: number
  findings: number
}

export interface OpenIndexOptions {
  readOnly?: boolean
  /** Create the file when missing (the collector does; readers do not). */
  create?: boolean
  /** No secondary indexes yet (a rebuild adds them at the end with `finishBulkLoad`). */
  bulk?: boolean
}

export class EventIndex {
  readonly path: string
  readonly db: DatabaseSync
  readonly #events: RowInserter | undefined
  readonly #groups: RowInserter | undefined
  readonly #findings: RowInserter | undefined
  readonly #lastId: StatementSync | undefined
  readonly #setIndexed: StatementSync | undefined
  readonly #getIndexed: StatementSync
  readonly #findTerm: StatementSync
  readonly #insertTerm: StatementSync | undefined
  /** term -> id; every distinct term seen (bounded: cleared when it grows past TERM_CACHE). */
  #terms = new Map<string, number>()
  #closed = false

  constructor(path: string, options: OpenIndexOptions = {}) {
    if (!options.create && !existsSync(path)) throw new IndexError(`no index at ${path}; run 'auditrail collector reindex --store DIR' (or start the collector, which builds it)`)
    this.path = path
    this.db = new DatabaseSync(path, { readOnly: options.readOnly === true, timeout: 5000 })
    if (!options.readOnly) {
      this.db.exec('PRAGMA journal_mode = WAL')
      // NORMAL in WAL mode: a power loss may lose the last transactions, never corrupt the file;
      // whatever is lost is re-indexed from the segments on start.
      this.db.exec(`PRAGMA synchronous = ${options.bulk ? 'OFF' : 'NORMAL'}`)
      // Inserts into the per-field indexes land all over them: keep the hot pages in memory (64 MiB).
      this.db.exec('PRAGMA cache_size = -65536')
      // Consecutive batches rewrite the same index pages: checkpointed every 64 MiB of WAL instead of
      // SQLite's 4 MiB, each page goes back to the file once for many batches. Measured on 400,000
      // events: 30 ms per 800-event batch on average before, 24 ms after (a larger cache or mmap: no gain).
      this.db.exec('PRAGMA wal_autocheckpoint = 16384')
      this.db.exec(TABLES)
      if (!options.bulk) this.db.exec(INDEXES)
      const version = this.db.prepare('SELECT value FROM meta WHERE key = ?').get('schema') as { value: string } | undefined
      if (!version) this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('schema', INDEX_SCHEMA_VERSION)
      else if (version.value !== INDEX_SCHEMA_VERSION) throw new IndexError(`${path} has schema version ${version.value}, this collector writes ${INDEX_SCHEMA_VERSION}; run 'auditrail collector reindex'`)
      this.#events = new RowInserter(this.db, `events (id, time, stream, sequence, record, segment, entry_offset, line_position, line_length,
        user, impersonated_user, source_ip, verb, resource, subresource, api_group, namespace, name, code, audit_id, stage, severity, audit_key)`, 23)
      this.#groups = new RowInserter(this.db, 'event_groups (grp, event)', 2)
      this.#findings = new RowInserter(this.db, 'findings (event, n, time, finding_id, severity, source, message, grp)', 8)
      this.#lastId = this.db.prepare('SELECT max(id) AS id FROM events')
      // Planner statistics where they are missing or stale (cheap: it analyzes only what needs it).
      if (!options.bulk) this.db.exec('PRAGMA optimize = 0x10002')
      this.#insertTerm = this.db.prepare('INSERT INTO terms (term) VALUES (?)')
      this.#setIndexed = this.db.prepare('INSERT INTO streams (stream, indexed_sequence) VALUES (?, ?) ON CONFLICT (stream) DO UPDATE SET indexed_sequence = excluded.indexed_sequence')
    }
    this.#getIndexed = this.db.prepare('SELECT indexed_sequence AS s FROM streams WHERE stream = ?')
    this.#findTerm = this.db.prepare('SELECT id FROM terms WHERE term = ?')
  }

  /** The id of a term, added when new (inside the caller's transaction). */
  #term(value: string | null): number | null {
    if (value === null) return null
    const cached = this.#terms.get(value)
    if (cached !== undefined) return cached
    const found = this.#findTerm.get(value) as { id: number } | undefined
    const id = found ? found.id : Number(this.#insertTerm!.run(value).lastInsertRowid)
    if (this.#terms.size >= TERM_CACHE) this.#terms.clear()
    this.#terms.set(value, id)
    return id
  }

  /** The last batch of the stream in the index (0: none). */
  indexedSequence(stream: string): number {
    return (this.#getIndexed.get(stream) as { s: number } | undefined)?.s ?? 0
  }

  /**
   * Indexes one stored batch, in one transaction with the stream's indexed sequence.
   * `entry` is the SealedBatch as stored (the line positions are taken from it).
   */
  indexBatch(stream: string, at: EntryLocation, entry: Uint8Array): IndexedBatch {
    const buf = Buffer.isBuffer(entry) ? entry : Buffer.from(entry.buffer, entry.byteOffset, entry.byteLength)
    // Decoded from the stored bytes themselves: the line positions are views into them.
    const b = indexedFieldsOf(buf)
    const expected = this.indexedSequence(stream) + 1
    if (b.sequence !== expected) throw new IndexError(`stream ${stream}: index holds up to ${expected - 1}, asked to index ${b.sequence}`)
    let events = 0
    let findings = 0
    this.db.exec('BEGIN IMMEDIATE')
    try {
      // Ids given here as SQLite gives them (the largest so far + 1), so that an event's groups
      // and findings can go in with it, many rows a statement.
      let id = (this.#lastId!.get() as { id: number | null }).id ?? 0
      for (const { record, fields, position, length, findings: fs, severity } of eventRows(b, buf)) {
        id++
        this.#events!.add(
          id, fields.time, stream, b.sequence, record, at.segment, at.offset, at.offset + ENTRY_HEADER_BYTES + position, length,
          this.#term(fields.user), this.#term(fields.impersonated), this.#term(fields.sourceIp), this.#term(fields.verb), this.#term(fields.resource), this.#term(fields.subresource),
          this.#term(fields.apiGroup), this.#term(fields.namespace), fields.name, fields.code, fields.auditId, this.#term(fields.stage), severity,
          fields.auditId === null ? null : auditKey(fields.auditId),
        )
        for (const g of fields.groups) this.#groups!.add(this.#term(g), id)
        for (const [n, f] of fs.entries()) this.#findings!.add(id, n, fields.time, f.id, severityRank(f.severity), f.source, f.message, f.details.group ?? null)
        events++
        findings += fs.length
      }
      this.#events!.flush()
      this.#groups!.flush()
      this.#findings!.flush()
      this.#setIndexed!.run(stream, b.sequence)
      this.db.exec('COMMIT')
    } catch (err) {
      this.db.exec('ROLLBACK')
      for (const rows of [this.#events!, this.#groups!, this.#findings!]) rows.clear()
      this.#terms.clear() // it may hold ids of terms the rollback removed
      throw err
    }
    return { events, findings }
  }

  /** Removes what the index holds past a stream's head (a store restored from an older copy). */
  forgetAfter(stream: string, head: number): number {
    this.db.exec('BEGIN IMMEDIATE')
    try {
      const ids = 'SELECT id FROM events WHERE stream = ? AND sequence > ?'
      this.db.prepare(`DELETE FROM event_groups WHERE event IN (${ids})`).run(stream, head)
      this.db.prepare(`DELETE FROM findings WHERE event IN (${ids})`).run(stream, head)
      const { changes } = this.db.prepare('DELETE FROM events WHERE stream = ? AND sequence > ?').run(stream, head)
      this.#setIndexed!.run(stream, head)
      this.db.exec('COMMIT')
      return Number(changes)
    } catch (err) {
      this.db.exec('ROLLBACK')
      throw err
    }
  }

  /** After a bulk load: the secondary indexes, planner statistics, and durable settings. */
  finishBulkLoad(): void {
    this.db.exec(INDEXES)
    this.db.exec('ANALYZE')
    this.db.exec('PRAGMA synchronous = NORMAL')
    this.db.exec('PRAGMA wal_checkpoint(TRUNCATE)')
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    try {
      if (!this.db.isOpen) return
      if (!this.#readOnly()) this.db.exec('PRAGMA optimize')
    } finally {
      this.db.close()
    }
  }

  #readOnly(): boolean {
    return this.#events === undefined
  }
}

export function indexPath(storeDir: string): string {
  return join(storeDir, INDEX_FILE)
}

/**
 * Indexes a stream from the segments, from the index's indexed sequence + 1 up to
 * `head` (entries after it may be half written by a live collector). With
 * `yieldEvery`, yields to the event loop between batches so that the index worker
 * keeps handling the batches posted to it; `onBatch` gets each batch's indexing time.
 */
export async function catchUpStream(index: EventIndex, storeDir: string, stream: string, head: number, options: { yieldEvery?: number; stop?: () => boolean; onBatch?: (indexed: IndexedBatch, ms: number) => void } = {}): Promise<number> {
  let next = index.indexedSequence(stream) + 1
  if (next > head) return 0
  const { segments } = await listSegments(storeDir, stream)
  let start = segments.findLastIndex((s) => s.first <= next)
  if (start < 0) start = 0
  let batches = 0
  for (const segment of segments.slice(start)) {
    let sequence = segment.first
    for await (const item of readSegment(segment.path)) {
      if (sequence > head || options.stop?.()) return batches
      if (item.kind === 'bad') throw new StoreError(`${segment.path} at byte ${item.offset}: ${item.reason}; run 'auditrail verify' on the store`)
      if (sequence >= next) {
        const started = performance.now()
        const indexed = index.indexBatch(stream, { segment: segment.first, offset: item.offset }, item.bytes)
        options.onBatch?.(indexed, performance.now() - started)
        next = sequence + 1
        batches++
        if (options.yieldEvery && batches % options.yieldEvery === 0) await yieldToLoop()
      }
      sequence++
    }
  }
  return batches
}

export interface ReindexSummary {
  streams: number
  batches: number
  events: number
  ms: number
}

/**
 * Drops the index and rebuilds it from the segments. The new index is built in a
 * separate file and renamed over the old one: a failed rebuild leaves the old one.
 * The caller holds the store's lock (no collector appends meanwhile).
 */
export async function rebuildIndex(storeDir: string): Promise<ReindexSummary> {
  const started = performance.now()
  const target = indexPath(storeDir)
  const temp = `${target}.rebuild`
  removeIndexFiles(temp)
  const index = new EventIndex(temp, { create: true, bulk: true })
  let batches = 0
  const streams = await listStreams(storeDir)
  try {
    for (const stream of streams) batches += await catchUpStream(index, storeDir, stream, Number.MAX_SAFE_INTEGER)
    index.finishBulkLoad()
  } catch (err) {
    index.close()
    removeIndexFiles(temp)
    throw err
  }
  const events = (index.db.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n
  index.close()
  removeIndexFiles(target)
  renameSync(temp, target)
  return { streams: streams.length, batches, events, ms: Math.round(performance.now() - started) }
}

function removeIndexFiles(path: string): void {
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${path}${suffix}`, { force: true })
}
