// The PostgreSQL store against a real server: the schema and its migrations, append-only
// enforced by the database itself, and the chain held by the database even for a writer
// that goes around the collector.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import pg from 'pg'
import { clientConfig, migratePostgres, openPostgresStore } from '../../collector/store/postgres-store.ts'
import { SCHEMA_VERSION } from '../../collector/store/postgres-schema.ts'
import { batchDigest } from '../../proto/wire.ts'
import { pino } from 'pino'
import { appendSealed, Chain, testKey } from './fixtures.ts'
import { startPostgres } from './postgres-server.ts'

const run = promisify(execFile)
const key = testKey()
const logger = pino({ level: 'silent' })
const server = await startPostgres(t)
const CLI = new URL('../../programs/main.ts', import.meta.url).pathname

t.test('migrate: twice at once from two processes, then again: one schema, at the current version', async (t) => {
  await server.admin('postgres', 'CREATE DATABASE racing')
  const url = `postgres://postgres@127.0.0.1:${server.port}/racing`
  const both = await Promise.all([1, 2].map(() => run(process.execPath, [CLI, 'collector', 'migrate', '--store', url])))
  const said = both.map((r) => r.stdout).sort()
  t.match(said[0], new RegExp(`schema is at version ${SCHEMA_VERSION}, nothing to do|schema migrated from version 0 to ${SCHEMA_VERSION}`))
  t.match(said.join(''), new RegExp(`schema migrated from version 0 to ${SCHEMA_VERSION}`), 'one of them migrated')
  t.match(said.join(''), /nothing to do/, 'the other waited for it and found nothing to do')
  t.same(await migratePostgres(url), { name: url, from: SCHEMA_VERSION, to: SCHEMA_VERSION })
  const rows = await server.admin<{ version: number }>('racing', 'SELECT version FROM auditrail.schema_migrations ORDER BY version')
  t.same(rows, Array.from({ length: SCHEMA_VERSION }, (_, i) => ({ version: i + 1 })), 'each version applied once')
})

t.test('a URL with a password is refused, and the password is not repeated', async (t) => {
  const url = `postgres://collector:hunter2@127.0.0.1:${server.port}/x`
  await t.rejects(openPostgresStore(url, { logger }), /holds a password.*PGPASSWORD/)
  const r = await run(process.execPath, [CLI, 'collector', 'migrate', '--store', url]).catch((e: { stderr: string; code: number }) => e)
  t.equal((r as { code: number }).code, 1)
  t.notMatch((r as { stderr: string }).stderr, /hunter2/)
})

t.test('a database without the schema fails the start and says to migrate', async (t) => {
  await server.admin('postgres', 'CREATE DATABASE bare')
  await t.rejects(openPostgresStore(`postgres://collector@127.0.0.1:${server.port}/bare`, { logger }), new RegExp(`schema is version 0, this collector needs ${SCHEMA_VERSION}; run 'auditrail collector migrate`))
})

t.test('append-only in the database: UPDATE, DELETE, TRUNCATE fail for the collector, and UPDATE and TRUNCATE for the owner too', async (t) => {
  const { url } = await server.database('appendonly')
  const store = await openPostgresStore(url, { logger })
  t.teardown(() => store.close())
  const chain = new Chain('node-a', key)
  for (const s of chain.grow(3)) await appendSealed(store, 'node-a', s)
  t.equal((await store.head('node-a'))?.sequence, 3)

  const asCollector = async (sql: string) => {
    const c = new pg.Client(clientConfig(url))
    await c.connect()
    try {
      await c.query(sql)
    } finally {
      await c.end()
    }
  }
  for (const sql of [
    `UPDATE auditrail.batches SET key_id = 'x' WHERE sequence = 2`,
    'DELETE FROM auditrail.batches WHERE sequence = 3',
    'TRUNCATE auditrail.batches CASCADE',
    `UPDATE auditrail.streams SET stream = 'node-b'`,
    'DELETE FROM auditrail.streams',
    'TRUNCATE auditrail.streams CASCADE',
    // The query index (schema version 2) is held to the same rules.
    `UPDATE auditrail.events SET "user" = 'x'`,
    'DELETE FROM auditrail.events',
    'TRUNCATE auditrail.events CASCADE',
    `UPDATE auditrail.findings SET message = 'x'`,
    'DELETE FROM auditrail.findings',
    'DELETE FROM auditrail.event_groups',
    'DELETE FROM auditrail.indexed_batches',
    'TRUNCATE auditrail.indexed_batches CASCADE',
  ]) {
    await t.rejects(asCollector(sql), /permission denied/, `collector: ${sql}`)
  }
  const asOwner = (sql: string) => server.admin('appendonly', sql)
  await t.rejects(asOwner(`UPDATE auditrail.batches SET key_id = 'x' WHERE sequence = 2`), /UPDATE on auditrail.batches refused: stored batches are append-only/)
  await t.rejects(asOwner('TRUNCATE auditrail.batches CASCADE'), /TRUNCATE on auditrail.batches refused/)
  await t.rejects(asOwner(`UPDATE auditrail.events SET verb = 'get'`), /UPDATE on auditrail.events refused: stored batches are append-only/)
  await t.rejects(asOwner('TRUNCATE auditrail.findings'), /TRUNCATE on auditrail.findings refused/)
  // a role with DELETE granted but outside auditrail_retention is still refused, by the trigger
  await server.admin('appendonly', 'CREATE ROLE intruder NOLOGIN; GRANT USAGE ON SCHEMA auditrail TO intruder; GRANT SELECT, DELETE ON auditrail.batches TO intruder')
  await t.rejects(asOwner('SET ROLE intruder; DELETE FROM auditrail.batches WHERE sequence = 3'), /DELETE on auditrail.batches refused.*auditrail_retention/)

  // the retention role may delete (docs/operations.md)
  await server.admin('appendonly', 'CREATE ROLE janitor NOLOGIN IN ROLE auditrail_retention')
  // A batch's index rows point at it: they go first (docs/operations.md).
  await t.rejects(server.admin('appendonly', `SET ROLE janitor; DELETE FROM auditrail.batches WHERE stream = 'node-a' AND sequence = 3`), /violates foreign key constraint/)
  await server.admin('appendonly', `SET ROLE janitor;
    DELETE FROM auditrail.findings WHERE event IN (SELECT id FROM auditrail.events WHERE stream = 'node-a' AND sequence = 3);
    DELETE FROM auditrail.event_groups WHERE event IN (SELECT id FROM auditrail.events WHERE stream = 'node-a' AND sequence = 3);
    DELETE FROM auditrail.events WHERE stream = 'node-a' AND sequence = 3;
    DELETE FROM auditrail.indexed_batches WHERE stream = 'node-a' AND sequence = 3;
    DELETE FROM auditrail.batches WHERE stream = 'node-a' AND sequence = 3`)
  t.equal((await store.head('node-a'))?.sequence, 2, 'retention removed the batch')
})

t.test('the database holds the chain even for a writer that skips the collector\'s checks', async (t) => {
  const { url } = await server.database('chain')
  const store = await openPostgresStore(url, { logger })
  t.teardown(() => store.close())
  const chain = new Chain('node-a', key)
  const [one, two] = chain.grow(2)
  await appendSealed(store, 'node-a', one!)
  // a second batch 1: the primary key
  const fork = new Chain('node-a', key)
  const other = [fork.next(['{"other":1}']), fork.next(['{"other":2}'])]
  await t.rejects(appendSealed(store, 'node-a', other[0]!), /duplicate key value violates unique constraint/)
  // a batch 2 that links to the other chain's 1: the link trigger
  await t.rejects(appendSealed(store, 'node-a', other[1]!), /does not link to the stored sequence 1/)
  // a batch 3 with no 2 stored: the link trigger
  const three = chain.grow(1)[0]!
  await t.rejects(appendSealed(store, 'node-a', three), /sequence 3 does not follow a stored batch/)
  // another key without a rotation: the link trigger
  const forged = { ...two!, keyId: testKey().keyId }
  await t.rejects(appendSealed(store, 'node-a', forged), /is signed by .* the stream belongs to/)
  await appendSealed(store, 'node-a', two!)
  const head = await store.head('node-a')
  t.equal(head?.sequence, 2)
  t.same(head?.digest, batchDigest(two!.batch))
  t.same(head?.keyId, key.keyId)
})

t.test('lastBatchAges: one age per stream, from its head\'s stored_at (the same on every collector of the database)', async (t) => {
  const { url } = await server.database('ages')
  const store = await openPostgresStore(url, { logger })
  t.teardown(() => store.close())
  t.same(await store.lastBatchAges(), [], 'no streams, no ages')
  const a = new Chain('node-a', key)
  for (const sealed of a.grow(2)) await appendSealed(store, 'node-a', sealed)
  await new Promise((resolve) => setTimeout(resolve, 1_100))
  await appendSealed(store, 'node-b', new Chain('node-b', key).grow(1)[0]!)
  const ages = (await store.lastBatchAges()).sort((x, y) => x - y)
  t.equal(ages.length, 2, 'one per stream, not one per batch')
  t.ok(ages[0]! >= 0 && ages[0]! < 1, `node-b's batch is fresh (${ages[0]})`)
  t.ok(ages[1]! >= 1 && ages[1]! < 30, `node-a's head is over a second old (${ages[1]})`)
  const other = await openPostgresStore(url, { logger })
  t.teardown(() => other.close())
  t.equal((await other.lastBatchAges()).length, 2, 'another collector on the database sees the same streams')
})
