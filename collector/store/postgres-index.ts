// The PostgreSQL query index's writer: a batch's index rows (events, their groups,
// their findings; schema version 2 in postgres-schema.ts), inserted by the caller's
// transaction, the one that inserts the batch. The rows are those of the SQLite index
// (eventRows in collector/event-fields.ts), so both stores answer a query alike.
//
// Three statements per batch whatever its size: the values go as arrays, unnested
// by the database (an insert per event would be 800 round trips for a full batch).
import type { ClientBase } from 'pg'
import { decodeBatch, severityRank, type Batch } from '../../proto/wire.ts'
import { eventRows } from '../event-fields.ts'
import { SCHEMA } from './postgres-schema.ts'

export interface IndexedRows {
  events: number
  findings: number
}

/**
 * Indexes one batch, given as the Batch bytes exactly as stored in batches.batch (the line
 * positions are offsets into them). `indexed_batches` takes the batch first: its primary key
 * makes a second indexing of the same batch fail, whichever collector tries (`claimed`: the
 * caller inserted that row itself; `decoded`: the Batch the caller decoded from these very bytes).
 */
export async function indexBatchRows(client: ClientBase, stream: string, batchBytes: Buffer, options: { claimed?: boolean; decoded?: Batch } = {}): Promise<IndexedRows> {
  // At append the collector has decoded these bytes already (to check them): not a second time.
  const b = options.decoded ?? decodeBatch(batchBytes)
  if (!options.claimed) await client.query(`INSERT INTO ${SCHEMA}.indexed_batches (stream, sequence) VALUES ($1, $2)`, [stream, b.sequence])
  const e = { time: [] as number[], record: [] as number[], position: [] as number[], length: [] as number[], user: [] as Array<string | null>, impersonated: [] as Array<string | null>, sourceIp: [] as Array<string | null>, verb: [] as Array<string | null>, resource: [] as Array<string | null>, subresource: [] as Array<string | null>, apiGroup: [] as Array<string | null>, namespace: [] as Array<string | null>, name: [] as Array<string | null>, code: [] as Array<number | null>, auditId: [] as Array<string | null>, stage: [] as Array<string | null>, severity: [] as Array<number | null> }
  const g = { record: [] as number[], grp: [] as string[] }
  const f = { record: [] as number[], n: [] as number[], time: [] as number[], id: [] as string[], severity: [] as number[], source: [] as string[], message: [] as string[], grp: [] as Array<string | null> }
  for (const row of eventRows(b, batchBytes)) {
    const x = row.fields
    e.time.push(x.time)
    e.record.push(row.record)
    e.position.push(row.position)
    e.length.push(row.length)
    for (const k of ['user', 'impersonated', 'sourceIp', 'verb', 'resource', 'subresource', 'apiGroup', 'namespace', 'name', 'auditId', 'stage'] as const) e[k].push(pgText(x[k]))
    e.code.push(x.code)
    e.severity.push(row.severity)
    for (const grp of x.groups) {
      g.record.push(row.record)
      g.grp.push(pgText(grp))
    }
    for (const [n, finding] of row.findings.entries()) {
      f.record.push(row.record)
      f.n.push(n)
      f.time.push(x.time)
      f.id.push(pgText(finding.id))
      f.severity.push(severityRank(finding.severity))
      f.source.push(pgText(finding.source))
      f.message.push(pgText(finding.message))
      f.grp.push(finding.details.group === undefined ? null : pgText(finding.details.group))
    }
  }
  if (e.record.length === 0) return { events: 0, findings: 0 }
  // One statement: the events, then their groups and findings joined to the ids the events got.
  await client.query(
    `WITH ev AS (
       INSERT INTO ${SCHEMA}.events (time, stream, sequence, record, line_position, line_length, "user", impersonated_user, source_ip, verb, resource, subresource, api_group, namespace, name, code, audit_id, stage, severity)
       SELECT u.time, $1, $2, u.record, u.position, u.length, u."user", u.impersonated, u.source_ip, u.verb, u.resource, u.subresource, u.api_group, u.namespace, u.name, u.code, u.audit_id, u.stage, u.severity
         FROM unnest($3::bigint[], $4::int[], $5::int[], $6::int[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::bigint[], $17::text[], $18::text[], $19::smallint[])
           AS u(time, record, position, length, "user", impersonated, source_ip, verb, resource, subresource, api_group, namespace, name, code, audit_id, stage, severity)
       RETURNING id, record
     ), groups AS (
       INSERT INTO ${SCHEMA}.event_groups (grp, event)
       SELECT u.grp, ev.id FROM unnest($20::int[], $21::text[]) AS u(record, grp) JOIN ev USING (record)
     )
     INSERT INTO ${SCHEMA}.findings (event, n, time, finding_id, severity, source, message, grp)
     SELECT ev.id, u.n, u.time, u.finding_id, u.severity, u.source, u.message, u.grp
       FROM unnest($22::int[], $23::int[], $24::bigint[], $25::text[], $26::smallint[], $27::text[], $28::text[], $29::text[]) AS u(record, n, time, finding_id, severity, source, message, grp)
       JOIN ev USING (record)`,
    [stream, b.sequence, e.time, e.record, e.position, e.length, e.user, e.impersonated, e.sourceIp, e.verb, e.resource, e.subresource, e.apiGroup, e.namespace, e.name, e.code, e.auditId, e.stage, e.severity,
      g.record, g.grp, f.record, f.n, f.time, f.id, f.severity, f.source, f.message, f.grp],
  )
  return { events: e.record.length, findings: f.record.length }
}

/**
 * A value as PostgreSQL text holds it: text cannot hold U+0000 (SQLite can), and an event whose
 * JSON has one ("\u0000") must not make its batch fail to insert (the agent would send it again
 * and again): it is indexed with U+FFFD there, and a query for such a value is asked the same way.
 */
export function pgText<T extends string | null>(value: T): T {
  return (value === null ? value : value.replaceAll('\0', '\uFFFD')) as T
}

export interface BackfillSummary {
  batches: number
  events: number
  ms: number
}

/** Batches read per round while backfilling: a batch may hold up to 16 MiB. */
const BACKFILL_PAGE = 16

/**
 * `auditrail collector reindex --store URL`: indexes the batches that have no index rows (stored
 * before schema version 2, or by a collector started with --no-index), each in a transaction of its
 * own. Safe beside running collectors and a second reindex: a batch another one indexed first is
 * skipped (its indexed_batches row exists; the conflict rolls this transaction back).
 */
export async function backfillIndex(client: ClientBase): Promise<BackfillSummary> {
  const started = performance.now()
  let batches = 0
  let events = 0
  let after: [string, number] = ['', 0]
  for (;;) {
    const { rows } = await client.query<{ stream: string; sequence: string }>(
      `SELECT b.stream, b.sequence FROM ${SCHEMA}.batches b
        WHERE (b.stream, b.sequence) > ($1, $2) AND NOT EXISTS (SELECT FROM ${SCHEMA}.indexed_batches i WHERE i.stream = b.stream AND i.sequence = b.sequence)
        ORDER BY b.stream, b.sequence LIMIT ${BACKFILL_PAGE}`, after)
    for (const { stream, sequence } of rows) {
      await client.query('BEGIN')
      try {
        const { rows: [row] } = await client.query<{ batch: Buffer }>(`SELECT batch FROM ${SCHEMA}.batches WHERE stream = $1 AND sequence = $2`, [stream, sequence])
        const claimed = await client.query(`INSERT INTO ${SCHEMA}.indexed_batches (stream, sequence) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [stream, sequence])
        if (claimed.rowCount === 0 || !row) {
          await client.query('ROLLBACK')
          continue
        }
        events += (await indexBatchRows(client, stream, row.batch, { claimed: true })).events
        await client.query('COMMIT')
        batches++
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {})
        throw err
      }
    }
    if (rows.length < BACKFILL_PAGE) break
    const last = rows.at(-1)!
    after = [last.stream, Number(last.sequence)]
  }
  return { batches, events, ms: Math.round(performance.now() - started) }
}
