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
  {
    // The query index, the same rows as the SQLite index beside a directory store (collector/event-fields.ts),
    // written in the transaction that inserts the batch (store/postgres-index.ts): a batch and its index rows
    // commit together or not at all, so no collector indexes a batch twice and none is ever half indexed.
    // Values are stored as text (PostgreSQL's btree indexes deduplicate repeated keys; no terms table).
    // A row points into its batch: the line is batches.batch[line_position, +line_length], read with
    // substring(), which for a value stored uncompressed (STORAGE EXTERNAL) reads only the TOAST chunks
    // holding the line, not the whole batch. Rows stored before this version keep their compression
    // (readable, slower to slice) and have no index rows until `auditrail collector reindex --store URL`.
    version: 2,
    sql: `
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditrail_reader') THEN CREATE ROLE auditrail_reader NOLOGIN; END IF;
END $$;

ALTER TABLE auditrail.batches ALTER COLUMN batch SET STORAGE EXTERNAL;

-- One row per indexed batch (heartbeats included, which hold no events): what reindex skips.
CREATE TABLE auditrail.indexed_batches (
  stream text COLLATE "C" NOT NULL,
  sequence bigint NOT NULL,
  PRIMARY KEY (stream, sequence),
  FOREIGN KEY (stream, sequence) REFERENCES auditrail.batches (stream, sequence)
);

CREATE TABLE auditrail.events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  time bigint NOT NULL,                -- stageTimestamp, Unix ms
  stream text COLLATE "C" NOT NULL,    -- "C" where results are ordered or paged by the text: the byte order SQLite uses
  sequence bigint NOT NULL,
  record integer NOT NULL,             -- index in Batch.records
  line_position integer NOT NULL,      -- byte offset of the event line in batches.batch
  line_length integer NOT NULL,
  "user" text, impersonated_user text, source_ip text, verb text, resource text, subresource text,
  api_group text, namespace text, name text,
  code bigint,                         -- any whole number an event carries: an int column would refuse some, and with them their batch
  audit_id text, stage text,
  severity smallint,                   -- highest finding severity (0 info .. 4 critical), NULL without findings
  UNIQUE (stream, sequence, record),
  FOREIGN KEY (stream, sequence) REFERENCES auditrail.indexed_batches (stream, sequence)
);
CREATE TABLE auditrail.event_groups (
  grp text COLLATE "C" NOT NULL,
  event bigint NOT NULL REFERENCES auditrail.events (id),
  PRIMARY KEY (grp, event)
);
CREATE TABLE auditrail.findings (
  event bigint NOT NULL REFERENCES auditrail.events (id),
  n integer NOT NULL,
  time bigint NOT NULL,
  finding_id text COLLATE "C" NOT NULL, severity smallint NOT NULL, source text COLLATE "C" NOT NULL, message text NOT NULL,
  grp text COLLATE "C",                -- the finding's group (details.group), NULL for a finding that names none
  PRIMARY KEY (event, n)
);
-- The SQLite index's secondary indexes, one per field that narrows a query a lot, each ending in time
-- for the result order (collector/index.ts says why the others are left out).
CREATE INDEX events_order ON auditrail.events (time, stream, sequence, record);
CREATE INDEX events_user ON auditrail.events ("user", time);
CREATE INDEX events_impersonated ON auditrail.events (impersonated_user, time) WHERE impersonated_user IS NOT NULL;
CREATE INDEX events_source_ip ON auditrail.events (source_ip, time);
CREATE INDEX events_object ON auditrail.events (resource, name, time);
CREATE INDEX events_namespace ON auditrail.events (namespace, time);
CREATE INDEX events_audit_id ON auditrail.events (audit_id);
CREATE INDEX events_severity ON auditrail.events (severity, time) WHERE severity IS NOT NULL;
CREATE INDEX findings_id ON auditrail.findings (finding_id, time);
CREATE INDEX findings_severity ON auditrail.findings (severity, time);
CREATE INDEX findings_group ON auditrail.findings (grp, time) WHERE grp IS NOT NULL;

CREATE TRIGGER indexed_batches_append_only BEFORE UPDATE OR DELETE ON auditrail.indexed_batches FOR EACH ROW EXECUTE FUNCTION auditrail.refuse_change();
CREATE TRIGGER indexed_batches_no_truncate BEFORE TRUNCATE ON auditrail.indexed_batches FOR EACH STATEMENT EXECUTE FUNCTION auditrail.refuse_change();
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON auditrail.events FOR EACH ROW EXECUTE FUNCTION auditrail.refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON auditrail.events FOR EACH STATEMENT EXECUTE FUNCTION auditrail.refuse_change();
CREATE TRIGGER event_groups_append_only BEFORE UPDATE OR DELETE ON auditrail.event_groups FOR EACH ROW EXECUTE FUNCTION auditrail.refuse_change();
CREATE TRIGGER event_groups_no_truncate BEFORE TRUNCATE ON auditrail.event_groups FOR EACH STATEMENT EXECUTE FUNCTION auditrail.refuse_change();
CREATE TRIGGER findings_append_only BEFORE UPDATE OR DELETE ON auditrail.findings FOR EACH ROW EXECUTE FUNCTION auditrail.refuse_change();
CREATE TRIGGER findings_no_truncate BEFORE TRUNCATE ON auditrail.findings FOR EACH STATEMENT EXECUTE FUNCTION auditrail.refuse_change();

REVOKE ALL ON auditrail.indexed_batches, auditrail.events, auditrail.event_groups, auditrail.findings FROM PUBLIC;
GRANT SELECT, INSERT ON auditrail.indexed_batches, auditrail.events, auditrail.event_groups, auditrail.findings TO auditrail_writer;
-- Retention deletes a batch's index rows before the batch (findings and groups, events, indexed_batches).
GRANT SELECT, DELETE ON auditrail.indexed_batches, auditrail.events, auditrail.event_groups, auditrail.findings TO auditrail_retention;
-- Readers (auditrail query --store URL, a reporting tool) read the index and the batches, and write nothing.
GRANT USAGE ON SCHEMA auditrail TO auditrail_reader;
GRANT SELECT ON auditrail.schema_migrations, auditrail.streams, auditrail.batches, auditrail.indexed_batches, auditrail.events, auditrail.event_groups, auditrail.findings TO auditrail_reader;
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
