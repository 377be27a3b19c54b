// The PostgreSQL store's schema, in numbered migrations. `migrate` applies the
// ones the database lacks, all in one transaction behind an advisory lock: two
// `auditrail collector migrate` runs at once (two replicas' init containers)
// take turns, and the second finds nothing left to do.
//
// Append-only is enforced by the database, not by the collector's good manners:
// the collector's role (a member of auditrail_writer) holds only SELECT and
// INSERT, and triggers refuse UPDATE and TRUNCATE to every role, the owner and
// superusers included, and DELETE to everyone outside auditrail_retention.
// Each insert is checked against the stored chain by a trigger as well (link to
// the previous digest, key binding), and the digest against the batch bytes.
import type { ClientBase } from 'pg'
import { StoreError } from './store.ts'

export const SCHEMA = 'auditrail'
/** pg_advisory_xact_lock(MIGRATE_LOCK): one migration at a time per database. The first key of the store's two-key locks is another. */
const MIGRATE_LOCK = 0x61756469

const MIGRATIONS: ReadonlyArray<{ version: number; sql: string }> = [
  {
    version: 1,
    sql: `
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditrail_writer') THEN CREATE ROLE auditrail_writer NOLOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditrail_retention') THEN CREATE ROLE auditrail_retention NOLOGIN; END IF;
END $$;

CREATE TABLE auditrail.streams (
  stream text PRIMARY KEY CHECK (stream ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$'),
  created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per stored batch. The SealedBatch is kept in its parts (the batch bytes exactly as signed);
-- prev_digest and rotated_from are copies of fields inside the batch, for the link trigger.
CREATE TABLE auditrail.batches (
  stream text NOT NULL REFERENCES auditrail.streams (stream),
  sequence bigint NOT NULL CHECK (sequence >= 1),
  digest bytea NOT NULL,
  prev_digest bytea NOT NULL,
  key_id text NOT NULL,
  rotated_from text,
  algorithm text NOT NULL,
  signature bytea NOT NULL,
  batch bytea NOT NULL,
  stored_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (stream, sequence),
  CONSTRAINT digest_of_batch CHECK (digest = sha256(batch))
);

CREATE FUNCTION auditrail.check_link() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  prev record;
BEGIN
  IF NEW.sequence = 1 THEN
    IF length(NEW.prev_digest) <> 0 THEN
      RAISE EXCEPTION 'stream %: sequence 1 must have an empty prev_digest', NEW.stream USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
  END IF;
  SELECT digest, key_id INTO prev FROM auditrail.batches WHERE stream = NEW.stream AND sequence = NEW.sequence - 1;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'stream %: sequence % does not follow a stored batch', NEW.stream, NEW.sequence USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF prev.digest <> NEW.prev_digest THEN
    RAISE EXCEPTION 'stream %: sequence % does not link to the stored sequence %', NEW.stream, NEW.sequence, NEW.sequence - 1 USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NEW.key_id <> prev.key_id AND NEW.rotated_from IS DISTINCT FROM prev.key_id THEN
    RAISE EXCEPTION 'stream %: sequence % is signed by %, the stream belongs to % and the batch carries no rotation from it', NEW.stream, NEW.sequence, NEW.key_id, prev.key_id USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END
$fn$;

CREATE FUNCTION auditrail.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'DELETE' AND pg_has_role(current_user, 'auditrail_retention', 'MEMBER') THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION '% on auditrail.% refused: stored batches are append-only (only members of auditrail_retention may DELETE, see docs/operations.md)', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END
$fn$;

CREATE TRIGGER batches_link BEFORE INSERT ON auditrail.batches FOR EACH ROW EXECUTE FUNCTION auditrail.check_link();
CREATE TRIGGER batches_append_only BEFORE UPDATE OR DELETE ON auditrail.batches FOR EACH ROW EXECUTE FUNCTION auditrail.refuse_change();
CREATE TRIGGER batches_no_truncate BEFORE TRUNCATE ON auditrail.batches FOR EACH STATEMENT EXECUTE FUNCTION auditrail.refuse_change();
CREATE TRIGGER streams_append_only BEFORE UPDATE OR DELETE ON auditrail.streams FOR EACH ROW EXECUTE FUNCTION auditrail.refuse_change();
CREATE TRIGGER streams_no_truncate BEFORE TRUNCATE ON auditrail.streams FOR EACH STATEMENT EXECUTE FUNCTION auditrail.refuse_change();
CREATE TRIGGER migrations_append_only BEFORE UPDATE OR DELETE ON auditrail.schema_migrations FOR EACH ROW EXECUTE FUNCTION auditrail.refuse_change();

REVOKE ALL ON ALL TABLES IN SCHEMA auditrail FROM PUBLIC;
REVOKE ALL ON SCHEMA auditrail FROM PUBLIC;
GRANT USAGE ON SCHEMA auditrail TO auditrail_writer, auditrail_retention;
GRANT SELECT, INSERT ON auditrail.streams, auditrail.batches TO auditrail_writer;
GRANT SELECT ON auditrail.schema_migrations TO auditrail_writer, auditrail_retention;
GRANT SELECT, DELETE ON auditrail.streams, auditrail.batches TO auditrail_retention;
`,
  },
]

export const SCHEMA_VERSION = MIGRATIONS.at(-1)!.version

export interface MigrateResult {
  from: number
  to: number
}

/** Brings the database to SCHEMA_VERSION; run by the database owner (it creates roles, tables and triggers). */
export async function migrate(client: ClientBase): Promise<MigrateResult> {
  await client.query('BEGIN')
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATE_LOCK])
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`)
    await client.query(`CREATE TABLE IF NOT EXISTS ${SCHEMA}.schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`)
    const from = await versionOn(client)
    if (from > SCHEMA_VERSION) throw new StoreError(`the database's auditrail schema is version ${from}, newer than this auditrail knows (${SCHEMA_VERSION}): upgrade auditrail`)
    for (const m of MIGRATIONS.filter((m) => m.version > from)) {
      await client.query(m.sql)
      await client.query(`INSERT INTO ${SCHEMA}.schema_migrations (version) VALUES ($1)`, [m.version])
    }
    await client.query('COMMIT')
    return { from, to: SCHEMA_VERSION }
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  }
}

/** The schema version the database holds (0 before the first migration). */
export async function versionOn(client: ClientBase): Promise<number> {
  const { rows } = await client.query<{ version: number | null }>(`SELECT max(version) AS version FROM ${SCHEMA}.schema_migrations`)
  return rows[0]?.version ?? 0
}
