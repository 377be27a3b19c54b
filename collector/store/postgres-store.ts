// The PostgreSQL store: any number of collectors on one database.
//
// Client: node-postgres (`pg`): pure JavaScript (no libpq to build into the image),
// maintained for over a decade, and it reads the libpq environment (PGPASSWORD,
// PGPASSFILE, PGSSLMODE...), so credentials stay off the command line.
//
// An append is one transaction: a transaction-scoped advisory lock on the stream
// (collectors writing one stream take turns, whichever machine they run on), the
// head as committed, the caller's chain check, the insert, COMMIT. The primary key
// (stream, sequence) and the link trigger (postgres-schema.ts) hold even for a
// writer that skips the lock. An answer of 'appended' means COMMIT returned; any
// failure of the database is a StoreUnavailableError, and nothing is acknowledged.
import pg from 'pg'
import { parseIntoClientConfig } from 'pg-connection-string'
import pgpass from 'pgpass'
import type { Logger } from 'pino'
import { encodeSealedBatch } from '../../proto/wire.ts'
import { backfillIndex, indexBatchRows, type BackfillSummary } from './postgres-index.ts'
import { migrate, SCHEMA, SCHEMA_VERSION, versionOn, type MigrateResult } from './postgres-schema.ts'
import {
  StoreError,
  StoreUnavailableError,
  type BatchStore,
  type ChainCheck,
  type LocatedBatch,
  type NewEntry,
  type StoredItem,
  type StoreHead,
  type StreamView,
} from './store.ts'

/** First key of the two-key advisory locks on streams (the second is hashtext(stream)): keeps them apart from other users of the database. */
const STREAM_LOCK = 0x61727331
/** Rows per read while walking a stream: a batch may hold up to 16 MiB, so few at a time. */
const PAGE_ROWS = 16
/** /readyz asks the database at most this often. */
const READY_CACHE_MS = 1000

/** Connections one collector holds at most: requests beyond wait for one (each append holds one for its transaction). */
const MAX_CONNECTIONS = 8
/** Time to get a connection, and for one statement (a wait for a stream's lock included), before the call fails as unavailable. */
const CONNECT_TIMEOUT_MS = 5000
const STATEMENT_TIMEOUT_MS = 15_000
/** A collector that stalls inside an append (paused, partitioned) must not hold its stream's lock for long. */
const IDLE_IN_TRANSACTION_MS = 30_000

export interface PostgresStoreOptions {
  logger: Logger
  /** Write each batch's query index rows in its insert transaction (default true; see postgres-index.ts). */
  index?: boolean
}

export function isPostgresUrl(spec: string): boolean {
  return /^postgres(ql)?:\/\//i.test(spec)
}

/** The URL as it may be logged: refused outright when it carries a password. */
export function checkPostgresUrl(spec: string): string {
  let url: URL
  try {
    url = new URL(spec)
  } catch {
    throw new StoreError('--store: not a valid postgres:// URL (postgres://USER@HOST:PORT/DATABASE)')
  }
  if (url.password !== '' || url.searchParams.has('password')) {
    throw new StoreError('--store: the URL holds a password; command lines are visible to every user of the machine: give the password in PGPASSWORD or a PGPASSFILE (libpq\'s .pgpass format) instead')
  }
  return url.toString()
}

/** `auditrail collector migrate`: one connection, as the URL's user (the database owner). */
export async function migratePostgres(spec: string): Promise<MigrateResult & { name: string }> {
  const name = checkPostgresUrl(spec)
  const client = new pg.Client({ ...clientConfig(spec), connectionTimeoutMillis: 10_000, application_name: 'auditrail-migrate' })
  try {
    await client.connect()
  } catch (err) {
    throw new StoreUnavailableError(`cannot reach PostgreSQL at ${name}: ${(err as Error).message}`)
  }
  try {
    return { name, ...(await migrate(client)) }
  } catch (err) {
    if (err instanceof StoreError) throw err
    throw new StoreError(`${name}: migration failed, nothing was changed: ${(err as Error).message}`)
  } finally {
    await client.end()
  }
}

/** `auditrail collector reindex --store URL`: indexes the batches without index rows (postgres-index.ts), as a collector's role. */
export async function reindexPostgres(spec: string): Promise<BackfillSummary & { name: string }> {
  const name = checkPostgresUrl(spec)
  const client = new pg.Client({ ...clientConfig(spec), connectionTimeoutMillis: 10_000, application_name: 'auditrail-reindex' })
  try {
    await client.connect()
  } catch (err) {
    throw new StoreUnavailableError(`cannot reach PostgreSQL at ${name}: ${(err as Error).message}`)
  }
  try {
    const version = await versionOn(client).catch(() => 0)
    if (version !== SCHEMA_VERSION) throw new StoreError(`${name}: the database's auditrail schema is version ${version}, reindex needs ${SCHEMA_VERSION}; run 'auditrail collector migrate --store URL' as the database owner first`)
    return { name, ...(await backfillIndex(client)) }
  } catch (err) {
    if (err instanceof StoreError) throw err
    throw new StoreError(`${name}: reindex stopped (what it indexed stays indexed; run it again to go on): ${(err as Error).message}`)
  } finally {
    await client.end()
  }
}

/**
 * The password as libpq finds it: PGPASSWORD, else the line of the PGPASSFILE (default ~/.pgpass, and only
 * when it is 0600) for this host, port, database and user. node-postgres does the same today but is dropping
 * its own .pgpass lookup (pg@9), so the lookup is done here; a password function is also what it asks for.
 */
function lookUpPassword(params: { host?: string; port?: number; database?: string; user?: string }): Promise<string | undefined> {
  if (process.env.PGPASSWORD !== undefined) return Promise.resolve(process.env.PGPASSWORD)
  return new Promise((resolve) => pgpass(params, resolve))
}

/** @types/pg lags the runtime here: node-postgres calls the function with the connection's parameters, and takes undefined as "no password". */
const libpqPassword = lookUpPassword as unknown as () => Promise<string>

/**
 * The URL parsed the way node-postgres parses it (sslmode and all), with the password looked up as above.
 * Not `connectionString`: node-postgres lets what it parses from that override the other options, password included.
 */
export function clientConfig(spec: string): pg.ClientConfig {
  return { ...parseIntoClientConfig(spec), password: libpqPassword }
}

type Row = { sequence: string; digest: Buffer; key_id: string; algorithm: string; signature: Buffer; batch: Buffer }

/**
 * Opens a pool without waiting for the database: a collector started while PostgreSQL is
 * down answers `unavailable` and reports it on /readyz until it is back. A database that
 * answers but lacks the schema (or has another version) fails the start.
 */
export async function openPostgresStore(spec: string, options: PostgresStoreOptions): Promise<PostgresStore> {
  const name = checkPostgresUrl(spec)
  const pool = new pg.Pool({
    ...clientConfig(spec),
    max: MAX_CONNECTIONS,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS,
    idleTimeoutMillis: 30_000,
    application_name: 'auditrail-collector',
  })
  // An idle connection that the server drops (a restart) is reported here; unheard, it would end the process.
  pool.on('error', (err) => options.logger.warn({ store: name, err: err.message }, 'a PostgreSQL connection failed; the next call opens a new one'))
  const store = new PostgresStore(name, pool, options.logger, options.index !== false)
  try {
    await store.checkSchema()
  } catch (err) {
    if (!(err instanceof StoreUnavailableError)) {
      await pool.end()
      throw err
    }
    options.logger.warn({ store: name, err: err.message }, 'PostgreSQL is unreachable at start; answering unavailable until it is back')
  }
  return store
}

export class PostgresStore implements BatchStore {
  readonly kind = 'postgres'
  readonly name: string
  readonly #pool: pg.Pool
  readonly #log: Logger
  readonly #index: boolean
  #schemaChecked = false
  #ready: { at: number; problem: string | undefined } | undefined

  constructor(name: string, pool: pg.Pool, log: Logger, index: boolean) {
    this.name = name
    this.#pool = pool
    this.#log = log
    this.#index = index
  }

  /** Once per store: the database holds the schema this code writes. */
  async checkSchema(): Promise<void> {
    if (this.#schemaChecked) return
    const version = await this.#with(async (client) => {
      try {
        return await versionOn(client)
      } catch (err) {
        if ((err as { code?: string }).code === '42P01' || (err as { code?: string }).code === '3F000') return 0
        throw err
      }
    })
    if (version !== SCHEMA_VERSION) {
      throw new StoreError(`${this.name}: the database's auditrail schema is version ${version}, this collector needs ${SCHEMA_VERSION}; run 'auditrail collector migrate --store URL' as the database owner`)
    }
    this.#schemaChecked = true
  }

  async streams(): Promise<string[]> {
    await this.#usable()
    const { rows } = await this.#query<{ stream: string }>(`SELECT stream FROM ${SCHEMA}.streams ORDER BY stream`)
    return rows.map((r) => r.stream)
  }

  async lastBatchAges(): Promise<number[]> {
    await this.#usable()
    // The head row of each stream through the (stream, sequence) primary key: one index probe per stream.
    const { rows } = await this.#query<{ age: number }>(
      `SELECT extract(epoch FROM now() - b.stored_at)::float8 AS age FROM ${SCHEMA}.streams s
       CROSS JOIN LATERAL (SELECT stored_at FROM ${SCHEMA}.batches WHERE stream = s.stream ORDER BY sequence DESC LIMIT 1) b`,
    )
    return rows.map((r) => Math.max(0, r.age))
  }

  async head(streamId: string): Promise<StoreHead | undefined> {
    await this.#usable()
    return this.#with((client) => headOn(client, streamId))
  }

  async append(streamId: string, entry: NewEntry, check: ChainCheck): Promise<'appended' | 'stored'> {
    await this.#usable()
    const client = await this.#connect()
    let broken: Error | undefined
    try {
      await db(client.query('BEGIN'))
      await db(client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [STREAM_LOCK, streamId]))
      const head = await db(headOn(client, streamId))
      const view: StreamView = {
        head,
        digestAt: async (sequence) => {
          const { rows } = await db(client.query<{ digest: Buffer }>(`SELECT digest FROM ${SCHEMA}.batches WHERE stream = $1 AND sequence = $2`, [streamId, sequence]))
          return rows[0]?.digest
        },
        streamsOfKey: async (keyId) => {
          const { rows } = await db(client.query<{ n: string }>(
            `SELECT count(*) AS n FROM ${SCHEMA}.streams s
               CROSS JOIN LATERAL (SELECT key_id FROM ${SCHEMA}.batches b WHERE b.stream = s.stream ORDER BY sequence DESC LIMIT 1) h
              WHERE h.key_id = $1`, [keyId]))
          return Number(rows[0]!.n)
        },
      }
      if ((await check(view)) === 'stored') {
        await db(client.query('ROLLBACK'))
        return 'stored'
      }
      const { batch, sealed, digest } = entry
      if (!head) await db(client.query(`INSERT INTO ${SCHEMA}.streams (stream) VALUES ($1) ON CONFLICT DO NOTHING`, [streamId]))
      // A view, not a copy: the index reads the line positions off the very bytes that are stored.
      const batchBytes = Buffer.from(sealed.batch.buffer, sealed.batch.byteOffset, sealed.batch.byteLength)
      await db(client.query(
        `INSERT INTO ${SCHEMA}.batches (stream, sequence, digest, prev_digest, key_id, rotated_from, algorithm, signature, batch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [streamId, batch.sequence, digest, Buffer.from(batch.prevDigest), sealed.keyId, batch.keyRotation?.previousKeyId ?? null, sealed.algorithm, Buffer.from(sealed.signature), batchBytes],
      ))
      // In the same transaction: the batch is queryable the moment it is acknowledged, and indexed once.
      if (this.#index) await db(indexBatchRows(client, streamId, batchBytes, { decoded: batch }))
      await db(client.query('COMMIT'))
      return 'appended'
    } catch (err) {
      if (err instanceof StoreUnavailableError) broken = err
      // After a failed statement the transaction is aborted; a connection that is gone is released broken below.
      await client.query('ROLLBACK').catch((e: Error) => (broken ??= e))
      throw err
    } finally {
      client.release(broken)
    }
  }

  async unready(): Promise<string | undefined> {
    const now = performance.now()
    if (this.#ready && now - this.#ready.at < READY_CACHE_MS) return this.#ready.problem
    let problem: string | undefined
    try {
      await this.#usable()
      await this.#query('SELECT 1')
    } catch (err) {
      problem = `PostgreSQL: ${(err as Error).message}`
    }
    this.#ready = { at: now, problem }
    return problem
  }

  async close(): Promise<void> {
    await this.#pool.end()
  }

  async layoutProblem(): Promise<undefined> {
    return undefined
  }

  async *entries(streamId: string): AsyncGenerator<StoredItem> {
    await this.#usable()
    let after = 0
    for (;;) {
      const { rows } = await this.#query<Row>(
        `SELECT sequence, digest, key_id, algorithm, signature, batch FROM ${SCHEMA}.batches WHERE stream = $1 AND sequence > $2 ORDER BY sequence LIMIT ${PAGE_ROWS}`,
        [streamId, after],
      )
      for (const r of rows) yield { kind: 'entry', bytes: sealedOf(r) }
      if (rows.length < PAGE_ROWS) return
      after = Number(rows.at(-1)!.sequence)
    }
  }

  async batchAt(streamId: string, sequence: number): Promise<LocatedBatch> {
    await this.#usable()
    const { rows } = await this.#query<Row>(`SELECT sequence, digest, key_id, algorithm, signature, batch FROM ${SCHEMA}.batches WHERE stream = $1 AND sequence = $2`, [streamId, sequence])
    return rows[0] ? { found: true, bytes: sealedOf(rows[0]) } : { found: false, reason: `sequence ${sequence} is not stored`, absent: true }
  }

  /** A schema that could not be checked at start (database down) is checked on first use; until then it is unavailable, not wrong. */
  async #usable(): Promise<void> {
    try {
      await this.checkSchema()
    } catch (err) {
      if (err instanceof StoreUnavailableError) throw err
      throw new StoreUnavailableError((err as Error).message)
    }
  }

  async #connect(): Promise<pg.PoolClient> {
    try {
      return await this.#pool.connect()
    } catch (err) {
      throw new StoreUnavailableError(`cannot reach PostgreSQL at ${this.name}: ${(err as Error).message}`)
    }
  }

  async #with<T>(task: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#connect()
    let broken: Error | undefined
    try {
      return await db(task(client))
    } catch (err) {
      broken = err as Error
      throw err
    } finally {
      client.release(broken)
    }
  }

  #query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    return this.#with((client) => client.query<R>(sql, params))
  }
}

async function headOn(client: pg.PoolClient, streamId: string): Promise<StoreHead | undefined> {
  const { rows } = await client.query<Row>(`SELECT sequence, digest, key_id, algorithm, signature, batch FROM ${SCHEMA}.batches WHERE stream = $1 ORDER BY sequence DESC LIMIT 1`, [streamId])
  const r = rows[0]
  return r && { sequence: Number(r.sequence), digest: r.digest, sealed: sealedOf(r), keyId: r.key_id }
}

/** The SealedBatch bytes, encoded as the file store stores them: the batch bytes are the ones signed, unchanged. */
function sealedOf(r: Row): Buffer {
  return Buffer.from(encodeSealedBatch({ batch: r.batch, signature: r.signature, keyId: r.key_id, algorithm: r.algorithm }))
}

/**
 * Any failure of the database (down, connection lost, a timeout, a constraint a concurrent
 * writer won) becomes StoreUnavailableError: nothing was committed, and the sender's retry
 * meets the chain as it now is (already stored: acknowledged; a fork: refused).
 */
async function db<T>(p: Promise<T>): Promise<T> {
  try {
    return await p
  } catch (err) {
    if (err instanceof StoreError) throw err
    if (err instanceof Error && ('code' in err || /connect|terminat|timeout|closed/i.test(err.message))) throw new StoreUnavailableError(`PostgreSQL: ${err.message}`)
    throw err
  }
}
