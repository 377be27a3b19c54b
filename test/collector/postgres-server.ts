// A private PostgreSQL server for one test file: initdb into a fresh temporary
// directory, listening on 127.0.0.1 on a free port (TCP only, password auth),
// stopped and removed at teardown.
//
// PostgreSQL refuses to run as root (a server process with root's powers would
// turn any SQL-level hole into a machine-level one), and CI runs the tests as
// root. So when we are root, initdb and the server run as the unprivileged
// `postgres` user that Debian's postgresql-15 package creates (runuser), and
// the temporary directory is handed to that user. Nothing is skipped when
// PostgreSQL is missing: the helper fails and says what to install.
//
// Passwords go where the collector reads them in production: a PGPASSFILE
// (0600), set in this process's environment and so inherited by child processes.
// URLs never hold one.
import { execFileSync } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { clientConfig, migratePostgres } from '../../collector/store/postgres-store.ts'
import { freePort } from '../e2e/processes.ts'

const ADMIN = 'postgres'
const COLLECTOR = 'collector'

export interface PostgresServer {
  port: number
  /** Creates a database, migrates it as the owner, and returns the collector role's URL for it (no password in it). */
  database(name: string): Promise<{ url: string; adminUrl: string }>
  /** Runs SQL as the superuser on a database. */
  admin<R extends pg.QueryResultRow = pg.QueryResultRow>(database: string, sql: string, params?: unknown[]): Promise<R[]>
  stop(): void
  start(): void
  restart(): void
  /** The server's main process (its backends are its children): the collector bench reads their CPU time. */
  pid(): number
}

/** Who cleans up after the server: a tap Test, or a script's own list of teardowns. */
export interface Teardowns {
  teardown(fn: () => void | Promise<void>): void
}

export interface PostgresOptions {
  /** fsync and synchronous commit on (default off: the tests check what a commit answers, not what survives a power cut). */
  durable?: boolean
}

function binDir(): string {
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'pg_ctl'))).sort((a, b) => Number(b) - Number(a)) : []
  if (versions.length === 0) throw new Error(`no PostgreSQL server under ${root}; install Debian's postgresql-15 (apt-get install postgresql-15), as .ci/run does`)
  return join(root, versions.includes('15') ? '15' : versions[0]!, 'bin')
}

/** Starts a server for this test file (or script); it is stopped and removed at its end. */
export async function startPostgres(t: Teardowns, options: PostgresOptions = {}): Promise<PostgresServer> {
  const bin = binDir()
  const asRoot = process.getuid?.() === 0
  const dir = mkdtempSync(join(tmpdir(), 'auditrail-pg-'))
  const data = join(dir, 'data')
  const log = join(dir, 'server.log')
  const run = (cmd: string, args: string[]) => {
    const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args]] : [join(bin, cmd), args]
    try {
      return execFileSync(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 }).toString()
    } catch (err) {
      const e = err as { stderr?: Buffer; stdout?: Buffer; message: string }
      throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr?.toString() || e.stdout?.toString() || e.message}`)
    }
  }
  const adminPassword = `admin-${process.pid}-${Date.now()}`
  const collectorPassword = `collector-${process.pid}-${Date.now()}`
  const pwfile = join(dir, 'pwfile')
  writeFileSync(pwfile, `${adminPassword}\n`, { mode: 0o600 })
  mkdirSync(join(dir, 'socket'))
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString())
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString())
    for (const p of [dir, pwfile, join(dir, 'socket')]) chownSync(p, uid, gid)
  }
  chmodSync(dir, 0o700)
  t.teardown(() => {
    try {
      run('pg_ctl', ['-D', data, 'stop', '-m', 'immediate'])
    } catch {
      // Already stopped (a test stopped it, or start failed): the directory goes anyway.
    }
    rmSync(dir, { recursive: true, force: true })
  })
  run('initdb', ['-D', data, '-U', ADMIN, '--pwfile', pwfile, '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--no-sync'])
  const port = await freePort()
  // fsync off for the tests: they check what a commit answers, not what survives a power cut; it keeps them fast.
  const serverOptions = `-h 127.0.0.1 -p ${port} -k ${join(dir, 'socket')} -c fsync=${options.durable ? 'on' : 'off'} -c max_connections=60`
  const start = () => run('pg_ctl', ['-D', data, '-l', log, '-o', serverOptions, '-w', '-t', '60', 'start'])
  start()

  const passfile = join(tmpdir(), `auditrail-pgpass-${process.pid}-${port}`)
  writeFileSync(passfile, `127.0.0.1:${port}:*:${ADMIN}:${adminPassword}\n127.0.0.1:${port}:*:${COLLECTOR}:${collectorPassword}\n`, { mode: 0o600 })
  process.env.PGPASSFILE = passfile
  t.teardown(() => rmSync(passfile, { force: true }))

  const admin = async <R extends pg.QueryResultRow>(database: string, sql: string, params: unknown[] = []) => {
    const client = new pg.Client(clientConfig(`postgres://${ADMIN}@127.0.0.1:${port}/${database}`))
    await client.connect()
    try {
      return (await client.query<R>(sql, params)).rows
    } finally {
      await client.end()
    }
  }
  await admin('postgres', `CREATE ROLE ${COLLECTOR} LOGIN PASSWORD '${collectorPassword}'`)
  return {
    port,
    async database(name) {
      await admin('postgres', `CREATE DATABASE "${name}"`)
      const adminUrl = `postgres://${ADMIN}@127.0.0.1:${port}/${name}`
      await migratePostgres(adminUrl)
      await admin(name, `GRANT auditrail_writer TO ${COLLECTOR}`)
      return { url: `postgres://${COLLECTOR}@127.0.0.1:${port}/${name}`, adminUrl }
    },
    admin,
    stop: () => run('pg_ctl', ['-D', data, 'stop', '-m', 'fast', '-w']),
    start,
    restart: () => run('pg_ctl', ['-D', data, '-l', log, '-o', serverOptions, 'restart', '-m', 'fast', '-w']),
    pid: () => Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n', 1)[0]),
  }
}
