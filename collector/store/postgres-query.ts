// The query side of the PostgreSQL index: an IndexBackend (collector/query.ts) over the
// tables that postgres-index.ts fills in each batch's insert transaction. The engine's SQL
// runs as it is, with PostgreSQL's placeholders and its Dialect; an event line is cut out
// of its stored batch by the database (substring of batches.batch), so the index holds no
// copy of the evidence, as the SQLite index points into the segments.
//
// Its own small pool, apart from the store's: a burst of queries cannot take the
// connections that appends need, and `auditrail query --store URL` opens only this.
import pg from 'pg'
import type { Logger } from 'pino'
import type { Dialect, IndexBackend, Row, SqlParam } from '../query.ts'
import { pgText } from './postgres-index.ts'
import { SCHEMA, versionOn } from './postgres-schema.ts'
import { checkPostgresUrl, clientConfig } from './postgres-store.ts'
import { StoreError, StoreUnavailableError } from './store.ts'

/** The schema version that brought the index. */
const INDEX_SCHEMA_VERSION = 2
const MAX_CONNECTIONS = 4
const CONNECT_TIMEOUT_MS = 5000
/** A query that takes longer is cut off (and answered 500): a reader cannot hold the database busy. */
const STATEMENT_TIMEOUT_MS = 30_000
const INT8_OID = 20

export const POSTGRES: Dialect = {
  term: '?',
  auditId: (id) => ({ sql: 'e.audit_id = ?', params: [id] }),
  placeColumns: '',
  idIn: '= ANY(?::bigint[])',
  idList: (ids) => ids,
}

/**
 * Every bigint the index returns (times, sequences, ids, counts) is a safe integer: times are
 * checked to be printable (event-fields.ts), the rest count things. Numbers, then, as SQLite gives them.
 */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => (oid === INT8_OID ? Number : pg.types.getTypeParser(oid, format))) as typeof pg.types.getTypeParser,
}

/** Opens the index of a postgres:// store for queries; fails, saying what to run, on a database without it. */
export async function openPostgresIndex(spec: string, logger: Logger): Promise<PostgresIndexBackend> {
  const name = checkPostgresUrl(spec)
  const pool = new pg.Pool({
    ...clientConfig(spec),
    max: MAX_CONNECTIONS,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    idleTimeoutMillis: 30_000,
    application_name: 'auditrail-query',
    // The engine's SQL names the tables without their schema.
    options: `-c search_path=${SCHEMA}`,
    types,
  })
  pool.on('error', (err) => logger.warn({ store: name, err: err.message }, 'a PostgreSQL connection of the query index failed; the next query opens a new one'))
  const backend = new PostgresIndexBackend(name, pool)
  try {
    const version = await backend.version()
    if (version < INDEX_SCHEMA_VERSION) {
      throw new StoreError(`${name}: the database's auditrail schema is version ${version}, which has no query index (version ${INDEX_SCHEMA_VERSION} brings it); run 'auditrail collector migrate --store URL' as the database owner, then 'auditrail collector reindex --store URL' for the batches stored before`)
    }
  } catch (err) {
    // A database down at start: the collector answers queries 503 with Retry-After until it is back (as its pushes, unavailable).
    if (err instanceof StoreUnavailableError) {
      logger.warn({ store: name, err: err.message }, 'PostgreSQL is unreachable at start; queries fail until it is back')
      return backend
    }
    await pool.end()
    throw err
  }
  return backend
}

export class PostgresIndexBackend implements IndexBackend {
  readonly dialect = POSTGRES
  readonly name: string
  readonly #pool: pg.Pool

  constructor(name: string, pool: pg.Pool) {
    this.name = name
    this.#pool = pool
  }

  async version(): Promise<number> {
    let client: pg.PoolClient
    try {
      client = await this.#pool.connect()
    } catch (err) {
      throw new StoreUnavailableError(`cannot reach PostgreSQL at ${this.name}: ${(err as Error).message}`)
    }
    try {
      return await versionOn(client)
    } catch (err) {
      // No schema at all: version 0.
      if ((err as { code?: string }).code === '42P01' || (err as { code?: string }).code === '3F000') return 0
      throw err
    } finally {
      client.release()
    }
  }

  async all<R>(sql: string, params: SqlParam[]): Promise<R[]> {
    let n = 0
    // The engine's fragments hold no '?' but its placeholders (no literal, no operator uses one).
    const text = sql.replace(/\?/g, () => `$${++n}`)
    const values = params.map((p) => (typeof p === 'string' ? pgText(p) : p))
    return (await this.#query(text, values)).rows as R[]
  }

  /** Each line cut out of its batch by the database: only the bytes of the lines cross the wire. */
  async lines(rows: readonly Row[]): Promise<Buffer[]> {
    if (rows.length === 0) return []
    const { rows: found } = await this.#query<{ id: number; line: Buffer }>(
      `SELECT e.id, substring(b.batch FROM e.line_position + 1 FOR e.line_length) AS line
         FROM events e JOIN batches b ON b.stream = e.stream AND b.sequence = e.sequence WHERE e.id = ANY($1::bigint[])`,
      [rows.map((r) => r.id)],
    )
    const byId = new Map(found.map((r) => [r.id, r.line]))
    return rows.map((r) => {
      const line = byId.get(r.id)
      if (!line || line.length !== r.line_length) throw new Error(`${this.name}: the index row of ${r.stream}:${r.sequence}:${r.record} points outside its batch; run 'auditrail verify'`)
      return line
    })
  }

  /** A database that cannot be reached (or a connection lost) is unavailable, as for the store: the caller may retry. */
  async #query<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await this.#pool.query<R>(sql, params)
    } catch (err) {
      const code = (err as { code?: unknown }).code
      // A socket error (ECONNREFUSED...), SQLSTATE class 08 (connection) or 57P (the server shutting down), or pg's own timeouts.
      const unreachable = typeof code === 'string' ? /^E[A-Z]+$|^08|^57P/.test(code) : /connect|terminat|timeout|closed/i.test((err as Error).message)
      if (unreachable) throw new StoreUnavailableError(`PostgreSQL at ${this.name}: ${(err as Error).message}`)
      throw err
    }
  }

  place(): undefined {
    return undefined
  }

  async close(): Promise<void> {
    await this.#pool.end()
  }
}
