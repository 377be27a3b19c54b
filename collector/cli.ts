// `auditrail collector` (and `collector migrate`, `collector reindex`, `collector token`), `auditrail verify`,
// `auditrail export` and `auditrail query`. Each returns its exit code: 0 success,
// 1 failure (verify: the store does not hold), 2 usage.
import { readFileSync } from 'node:fs'
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util'
import { KeyError, loadTrustedKeys } from '../proto/keys.ts'
import { createLogger } from '../shared/logger.ts'
import { copyStore } from './copy.ts'
import { ExportError, exportStream } from './export.ts'
import { EventIndex, IndexError, indexPath, rebuildIndex } from './index.ts'
import { parseQuery, QueryEngine, QueryError, QUERY_PARAMS, SqliteIndexBackend, type EventResult, type FindingResult, type GroupResult, type QueryKind } from './query.ts'
import { loadReaders, newToken, ReadersError, watchReaders } from './readers.ts'
import { startCollector, type TlsOptions } from './server.ts'
import { openFileStore } from './store/file-store.ts'
import { openStore, reading } from './store/open.ts'
import { openPostgresIndex } from './store/postgres-query.ts'
import { isPostgresUrl, migratePostgres, reindexPostgres } from './store/postgres-store.ts'
import { StoreError, type BatchStore } from './store/store.ts'
import { verifyEvent, verifyStore, type EventCoordinates, type StreamSummary } from './verify.ts'

const COLLECTOR_USAGE = `usage: auditrail collector --listen HOST:PORT --store DIR|URL --trust PUBKEY_FILE [--trust PUBKEY_FILE...]
                           [--tls-cert FILE --tls-key FILE [--client-ca FILE [--shared-client-cert]]] [--readers FILE] [--no-index] [--metrics-listen HOST:PORT] [--log-level LEVEL]
       auditrail collector migrate --store URL
       auditrail collector copy --from DIR|URL --to DIR|URL --trust PUBKEY_FILE [--trust PUBKEY_FILE...]
       auditrail collector reindex --store DIR|URL
       auditrail collector token --name NAME [--role auditor]
  --store      a directory (the file store), or postgres://USER@HOST:PORT/DATABASE: any number of
               collectors on one database; the password comes from PGPASSWORD or a PGPASSFILE,
               never from the URL (command lines are visible to every user of the machine)
  --trust      a node's .pub.pem, or a directory of them (every *.pub.pem inside): each node signs its
               own stream with its own key, and a stream stays bound to the key that created it
  --client-ca  require client certificates (mTLS) signed by this CA; a certificate may then write and
               read only the stream its CN or a DNS subjectAltName names
  --shared-client-cert  every node presents the same client certificate: bind streams by key alone
  --readers    enable the query API (GET /v1/events, /v1/findings, /v1/finding-groups) for the readers listed:
               one 'ROLE sha256:HEX NAME' line each (the token's SHA-256, never the token);
               read again when it changes and on SIGHUP
  --no-index   keep no query index (the query API is then off; on PostgreSQL, no index rows are written:
               'reindex --store URL' adds them later)
  --metrics-listen  serve /metrics (Prometheus), /livez and /readyz on this address, plain HTTP
               apart from --listen: no client certificate needed, and a flood of pushes cannot hold it
  migrate      create or upgrade the PostgreSQL schema (run as the database owner; safe to run from
               two places at once); then GRANT auditrail_writer TO the collectors' role
  copy         copy every stream of one store into another (a directory into PostgreSQL, or back), each
               batch checked on the way (seal, key, link) and the target verified after; run it again
               to resume (what the target holds is skipped); stop the collectors writing the target
  reindex      a directory: drop the index and rebuild it from the segments (stop the collector first);
               a database: index the batches without index rows (safe while collectors run)
  token        print a new random reader token and the readers-file line for it
`
const VERIFY_USAGE = `usage: auditrail verify DIR|URL --trust PUBKEY_FILE [--trust PUBKEY_FILE...] [--stream ID]
       auditrail verify DIR|URL --trust PUBKEY_FILE... --event STREAM:SEQUENCE:INDEX
       auditrail query ... --json | auditrail verify DIR|URL --trust PUBKEY_FILE... --event -
  exits 0 only if every stream (or the one named) is whole: checksums, signatures, links, no gap.
  --event checks one event: its batch's checksum and signature, the record, the link to the batch
  before and from the batch after; '-' reads 'auditrail query --json' lines from stdin and also
  checks that each line's event is the one stored
`
const QUERY_USAGE = `usage: auditrail query (--url URL --token-file FILE | --store DIR|URL) [--findings [--each]] [--json] [filters]
  filters: --user U --group G --impersonated-user U --source-ip IP --verb V --resource R --subresource S
           --api-group G ('' is the core group) --namespace NS --name N --code 403 --audit-id ID --stage S
           --stream ID --since T --until T (RFC 3339 or Unix ms; since inclusive, until exclusive)
           --finding ID --finding-group ID --severity info|low|medium|high|critical (at least) --limit N (1-1000, default 100)
           --cursor C (from the previous page)
  --findings  list finding groups (one row per incident: first and last seen, count, latest message)
              instead of events; with --each, one row per finding; --finding-group ID lists a group's events
  --json      one JSON object per line, as GET /v1/events returns them (pipe into 'auditrail verify --event -')
  the next page's cursor, if any, is printed on stderr
`
const EXPORT_USAGE = `usage: auditrail export DIR|URL [--stream ID] [--records]
  prints the stream's event lines in order, exactly as shipped; --records adds
  heartbeats, gaps, quarantined, unparsed, redacted-line and finding notes as '#auditrail {json}' lines
`

/** Signals that stop the collector cleanly (requests in flight finished, the store's lock released). */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGQUIT']

class UsageError extends Error {}
/** A query the collector refused, or that could not reach it. */
class QueryFailed extends Error {}

type Parsed = ReturnType<typeof parseArgs>

/** parseArgs, strict; its errors (unknown flag, missing value) become usage errors naming the flag. */
function parse(argv: string[], options: ParseArgsOptionsConfig, positionals: boolean): Parsed {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean' } }, strict: true, allowPositionals: positionals })
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}

async function run(name: string, usage: string, argv: string[], command: (argv: string[]) => Promise<number>): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage)
    return 0
  }
  try {
    return await command(argv)
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`auditrail ${name}: ${err.message}\n${usage}`)
      return 2
    }
    if (err instanceof KeyError || err instanceof ExportError || err instanceof StoreError || err instanceof IndexError || err instanceof ReadersError || err instanceof QueryFailed) {
      process.stderr.write(`auditrail ${name}: ${err.message}\n`)
      return 1
    }
    throw err
  }
}

function trustedKeysFrom(values: Parsed['values']): ReturnType<typeof loadTrustedKeys> {
  const files = values.trust as string[] | undefined
  if (!files || files.length === 0) throw new UsageError('--trust PUBKEY_FILE is required (the .pub.pem of each agent, from \'auditrail keygen\')')
  return loadTrustedKeys(files)
}

function onePositional(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? `${what} is required` : `one ${what} expected, got ${positionals.length}: ${positionals.join(' ')}`)
  return positionals[0]!
}

export function collectorCommand(argv: string[]): Promise<number> {
  if (argv[0] === 'migrate') return run('collector migrate', COLLECTOR_USAGE, argv.slice(1), migrateCommand)
  if (argv[0] === 'copy') return run('collector copy', COLLECTOR_USAGE, argv.slice(1), copyCommand)
  if (argv[0] === 'reindex') return run('collector reindex', COLLECTOR_USAGE, argv.slice(1), reindexCommand)
  if (argv[0] === 'token') return run('collector token', COLLECTOR_USAGE, argv.slice(1), tokenCommand)
  return run('collector', COLLECTOR_USAGE, argv, async () => {
    const { values } = parse(argv, {
      listen: { type: 'string' },
      store: { type: 'string' },
      trust: { type: 'string', multiple: true },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'client-ca': { type: 'string' },
      'shared-client-cert': { type: 'boolean' },
      readers: { type: 'string' },
      'no-index': { type: 'boolean' },
      'metrics-listen': { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
    }, false)
    const listen = parseListen(values.listen as string | undefined)
    const storeDir = values.store as string | undefined
    if (!storeDir) throw new UsageError('--store DIR or --store postgres://USER@HOST/DATABASE is required')
    const trustedKeys = trustedKeysFrom(values)
    const tls = tlsFrom(values)
    const index = values['no-index'] !== true
    if (!index && values.readers) throw new UsageError('--readers needs the index; drop --no-index')
    const readers = values.readers ? loadReaders(values.readers as string) : undefined
    const log = createLogger(values['log-level'] as string, 'collector')
    if (readers) log.info({ readers: readers.size, roles: readers.roles() }, 'query API on: GET /v1/events, /v1/findings, /v1/finding-groups')
    const metricsListen = values['metrics-listen'] as string | undefined
    const collector = await startCollector({ listen, storeDir, trustedKeys, logger: log, index, ...(readers ? { readers } : {}), ...(tls ? { tls } : {}), ...(metricsListen ? { metricsListen } : {}) })
    const watch = readers ? watchReaders(values.readers as string, readers, log) : undefined
    // SIGHUP reloads (it would otherwise end the process unlogged, its lock left behind);
    // the signals that end it close the store first, which removes the lock.
    const hangUp = () => {
      if (watch) watch.reload('SIGHUP')
      else log.info({ signal: 'SIGHUP' }, 'SIGHUP: nothing to reload (no --readers)')
    }
    process.on('SIGHUP', hangUp)
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      const stop = (s: NodeJS.Signals) => {
        for (const name of STOP_SIGNALS) process.off(name, stop)
        resolve(s)
      }
      for (const name of STOP_SIGNALS) process.on(name, stop)
    })
    log.info({ signal }, 'shutting down: finishing requests in flight')
    watch?.close()
    await collector.close()
    process.off('SIGHUP', hangUp)
    log.flush()
    return 0
  })
}

function parseListen(listen: string | undefined): { host: string; port: number } {
  if (!listen) throw new UsageError('--listen HOST:PORT is required (for example 127.0.0.1:8443)')
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(listen)
  const port = Number(m?.[3])
  if (!m || port > 65535) throw new UsageError(`--listen ${JSON.stringify(listen)} is not HOST:PORT (for example 127.0.0.1:8443 or [::1]:8443)`)
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port }
}

function tlsFrom(values: Parsed['values']): TlsOptions | undefined {
  const cert = values['tls-cert'] as string | undefined
  const key = values['tls-key'] as string | undefined
  const ca = values['client-ca'] as string | undefined
  if (values['shared-client-cert'] && !ca) throw new UsageError('--shared-client-cert goes with --client-ca')
  if (!cert && !key && !ca) return undefined
  if (!cert || !key) throw new UsageError('--tls-cert and --tls-key go together' + (ca ? ' (and --client-ca needs them)' : ''))
  const read = (flag: string, file: string) => {
    try {
      return readFileSync(file)
    } catch (err) {
      throw new UsageError(`${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }
  return { cert: read('--tls-cert', cert), key: read('--tls-key', key), ...(ca ? { ca: read('--client-ca', ca), requireClientCert: true, sharedClientCert: values['shared-client-cert'] === true } : {}) }
}

export function verifyCommand(argv: string[]): Promise<number> {
  return run('verify', VERIFY_USAGE, argv, async () => {
    const { values, positionals } = parse(argv, { trust: { type: 'string', multiple: true }, stream: { type: 'string' }, event: { type: 'string' } }, true)
    const spec = onePositional(positionals, 'store (directory or postgres:// URL)')
    const trustedKeys = trustedKeysFrom(values)
    if (values.event !== undefined && values.stream !== undefined) throw new UsageError('--stream and --event do not go together (the event names its stream)')
    return reading(spec, async (store) => {
      if (values.event !== undefined) return verifyEvents(store, trustedKeys, values.event as string)
      return verifyAll(store, trustedKeys, values.stream as string | undefined)
    })
  })
}

async function verifyAll(store: BatchStore, trustedKeys: ReturnType<typeof loadTrustedKeys>, stream: string | undefined): Promise<number> {
  const result = await verifyStore(store, trustedKeys, stream !== undefined ? { stream } : {})
  for (const s of result.streams) process.stdout.write(streamLine(s))
  const p = result.problem
  if (p) {
    const where = [`stream ${p.stream}`, p.segment && `segment ${p.segment}`, p.offset !== undefined && `byte ${p.offset}`, p.sequence !== undefined && `sequence ${p.sequence}`].filter(Boolean).join(', ')
    process.stdout.write(`FAIL ${where}: ${p.reason}\n`)
    return 1
  }
  return 0
}

function streamLine(s: StreamSummary): string {
  return `ok   stream ${s.stream}: sequences 1..${s.headSequence}, ${s.lines} lines, head digest ${s.headDigest}\n`
}

export function exportCommand(argv: string[]): Promise<number> {
  return run('export', EXPORT_USAGE, argv, async () => {
    const { values, positionals } = parse(argv, { stream: { type: 'string' }, records: { type: 'boolean' } }, true)
    const spec = onePositional(positionals, 'store (directory or postgres:// URL)')
    return reading(spec, async (store) => {
      await exportStream(store, { out: process.stdout, records: values.records === true, ...(values.stream !== undefined ? { stream: values.stream as string } : {}) })
      return 0
    })
  })
}

type Wanted = EventCoordinates & { event?: unknown }

async function verifyEvents(store: BatchStore, trustedKeys: ReturnType<typeof loadTrustedKeys>, spec: string): Promise<number> {
  const wanted: Wanted[] = []
  if (spec === '-') {
    const text = await readStdin()
    for (const [i, line] of text.split('\n').entries()) {
      if (line.trim() === '') continue
      let o: Record<string, unknown>
      try {
        o = JSON.parse(line) as Record<string, unknown>
      } catch {
        throw new UsageError(`stdin line ${i + 1} is not JSON; pipe 'auditrail query --json' into 'verify --event -'`)
      }
      if (typeof o.stream !== 'string' || !Number.isSafeInteger(o.sequence) || !Number.isSafeInteger(o.recordIndex)) {
        throw new UsageError(`stdin line ${i + 1} has no stream, sequence and recordIndex; pipe 'auditrail query --json' into 'verify --event -'`)
      }
      wanted.push({ stream: o.stream, sequence: o.sequence as number, recordIndex: o.recordIndex as number, ...('event' in o ? { event: o.event } : {}) })
    }
    if (wanted.length === 0) throw new UsageError('no events on stdin')
  } else {
    const m = /^([A-Za-z0-9][A-Za-z0-9._-]*):(\d+):(\d+)$/.exec(spec)
    if (!m || Number(m[2]) < 1) throw new UsageError(`--event ${JSON.stringify(spec)} is not STREAM:SEQUENCE:INDEX (for example node-a:42:7; sequences start at 1, record indexes at 0)`)
    wanted.push({ stream: m[1]!, sequence: Number(m[2]), recordIndex: Number(m[3]) })
  }
  let failed = 0
  for (const w of wanted) {
    const name = `${w.stream}:${w.sequence}:${w.recordIndex}`
    const proof = await verifyEvent(store, trustedKeys, w)
    let problem = proof.problem?.reason
    if (proof.ok && 'event' in w && JSON.stringify(JSON.parse(proof.line!.toString('utf8'))) !== JSON.stringify(w.event)) {
      problem = 'the event given is not the one stored at these coordinates (the signed line differs)'
    }
    if (problem) {
      const where = [proof.problem?.segment && `segment ${proof.problem.segment}`, proof.problem?.offset !== undefined && `byte ${proof.problem.offset}`].filter(Boolean).join(', ')
      process.stdout.write(`FAIL event ${name}${where ? ` (${where})` : ''}: ${problem}\n`)
      failed++
      continue
    }
    process.stdout.write(`ok   event ${name}\n${proof.checks.map((c) => `     ${c}\n`).join('')}`)
  }
  return failed > 0 ? 1 : 0
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk)
  return Buffer.concat(chunks).toString('utf8')
}

async function reindexCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { store: { type: 'string' } }, false)
  const storeDir = values.store as string | undefined
  if (!storeDir) throw new UsageError('--store DIR|URL is required')
  if (isPostgresUrl(storeDir)) {
    const summary = await reindexPostgres(storeDir)
    process.stdout.write(`reindexed ${summary.name}: ${summary.batches} batches without index rows indexed, ${summary.events} events in ${summary.ms} ms\n`)
    return 0
  }
  // The store's lock: no collector appends (or indexes) while the index is rebuilt.
  const store = await openFileStore(storeDir)
  try {
    const summary = await rebuildIndex(storeDir)
    process.stdout.write(`reindexed ${storeDir}: ${summary.streams} streams, ${summary.batches} batches, ${summary.events} events in ${summary.ms} ms (${indexPath(storeDir)})\n`)
  } finally {
    await store.close()
  }
  return 0
}

async function migrateCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { store: { type: 'string' } }, false)
  const url = values.store as string | undefined
  if (!url || !isPostgresUrl(url)) throw new UsageError('--store postgres://USER@HOST:PORT/DATABASE is required (a file store needs no migration); the password comes from PGPASSWORD or a PGPASSFILE')
  const { name, from, to } = await migratePostgres(url)
  process.stdout.write(from === to ? `${name}: schema is at version ${to}, nothing to do\n` : `${name}: schema migrated from version ${from} to ${to}\n`)
  return 0
}

async function copyCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { from: { type: 'string' }, to: { type: 'string' }, trust: { type: 'string', multiple: true } }, false)
  const from = values.from as string | undefined
  const to = values.to as string | undefined
  if (!from || !to) throw new UsageError('--from DIR|URL and --to DIR|URL are required')
  if (from === to) throw new UsageError('--from and --to name the same store')
  const trustedKeys = trustedKeysFrom(values)
  return reading(from, async (source) => {
    // Opened as a collector opens it: a directory is locked (no collector appends meanwhile), a database checked for its schema.
    const target = await openStore(to)
    try {
      const summary = await copyStore(source, target, trustedKeys)
      for (const s of summary.streams) process.stdout.write(streamLine(s))
      process.stdout.write(`copied ${summary.copied} batches from ${source.name} to ${target.name} (${summary.present} were there already); the copy verifies\n`)
      return 0
    } finally {
      await target.close()
    }
  })
}

async function tokenCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { name: { type: 'string' }, role: { type: 'string', default: 'auditor' } }, false)
  if (!values.name) throw new UsageError('--name NAME is required (who the token is for; it appears in the query log)')
  const { token, line } = newToken(values.role as string, values.name as string)
  process.stdout.write(`token:        ${token}\nreaders line: ${line}\n`)
  process.stderr.write('give the token to the reader (keep it secret: it is shown only here); add the line to the collector\'s --readers file\n')
  return 0
}

// --- query

/** CLI flag -> query parameter: the same names, in kebab case. */
const QUERY_FLAGS: Record<string, string> = Object.fromEntries(QUERY_PARAMS.map((p) => [p.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), p]))

export function queryCommand(argv: string[]): Promise<number> {
  return run('query', QUERY_USAGE, argv, async () => {
    const { values } = parse(argv, {
      url: { type: 'string' },
      'token-file': { type: 'string' },
      store: { type: 'string' },
      findings: { type: 'boolean' },
      each: { type: 'boolean' },
      json: { type: 'boolean' },
      ...Object.fromEntries(Object.keys(QUERY_FLAGS).map((f) => [f, { type: 'string' as const }])),
    }, false)
    if (values.each === true && values.findings !== true) throw new UsageError('--each goes with --findings (one row per finding instead of one per group)')
    const kind: QueryKind = values.findings !== true ? 'events' : values.each === true ? 'findings' : 'groups'
    const params = new URLSearchParams()
    for (const [flag, param] of Object.entries(QUERY_FLAGS)) {
      const v = values[flag]
      if (typeof v === 'string') params.set(param, v)
    }
    const url = values.url as string | undefined
    const storeDir = values.store as string | undefined
    if ((url === undefined) === (storeDir === undefined)) throw new UsageError('give either --url URL (with --token-file FILE) or --store DIR|URL')
    let results: Array<EventResult | FindingResult | GroupResult>
    let lines: string[]
    let next: string | undefined
    if (storeDir !== undefined) {
      if (values['token-file'] !== undefined) throw new UsageError('--token-file goes with --url, not --store')
      let q
      try {
        q = parseQuery(kind, params)
      } catch (err) {
        if (err instanceof QueryError) throw new UsageError(`--${Object.entries(QUERY_FLAGS).find(([, p]) => p === err.param)?.[0] ?? err.param}: ${err.message.slice(err.param.length + 2)}`)
        throw err
      }
      const index = isPostgresUrl(storeDir) ? await openPostgresIndex(storeDir, createLogger('warn', 'query')) : new SqliteIndexBackend(new EventIndex(indexPath(storeDir), { readOnly: true }), storeDir)
      try {
        const answer = await new QueryEngine(index).answer(q)
        lines = answer.lines
        results = values.json === true ? [] : answer.objects()
        next = answer.nextCursor
      } finally {
        await index.close()
      }
    } else {
      const tokenFile = values['token-file'] as string | undefined
      if (!tokenFile) throw new UsageError('--token-file FILE is required with --url (a file holding the reader\'s bearer token)')
      let token: string
      try {
        token = readFileSync(tokenFile, 'utf8').trim()
      } catch (err) {
        throw new UsageError(`--token-file ${tokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
      }
      const target = new URL(`/v1/${kind === 'groups' ? 'finding-groups' : kind}?${params}`, url)
      let res: Response
      try {
        res = await fetch(target, { headers: { authorization: `Bearer ${token}` } })
      } catch (err) {
        throw new QueryFailed(`cannot reach ${target.origin}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}`)
      }
      const body = await res.text()
      if (res.status !== 200) {
        let message = body
        try {
          message = (JSON.parse(body) as { error?: string }).error ?? body
        } catch {}
        throw new QueryFailed(`the collector answered ${res.status}: ${message}`)
      }
      lines = body.split('\n').filter((l) => l !== '').map((l) => `${l}\n`)
      results = values.json === true ? [] : lines.map((l) => JSON.parse(l) as EventResult | GroupResult)
      next = res.headers.get('auditrail-next-cursor') ?? undefined
    }
    if (values.json === true) process.stdout.write(lines.join(''))
    else process.stdout.write(table(kind, results))
    if (next) process.stderr.write(`more results: repeat with --cursor ${next}\n`)
    return 0
  })
}

function table(kind: QueryKind, results: Array<EventResult | FindingResult | GroupResult>): string {
  if (kind === 'groups') {
    const header = ['FIRST SEEN', 'LAST SEEN', 'COUNT', 'SEVERITY', 'FINDING', 'GROUP', 'MESSAGE']
    return columns(header, (results as GroupResult[]).map((g) => [g.firstSeen, g.lastSeen, String(g.count), g.severity, `${g.source}:${g.finding}`, g.group, g.message]))
  }
  const header = kind === 'events'
    ? ['TIME', 'EVENT (STREAM:SEQ:INDEX)', 'USER', 'VERB', 'RESOURCE', 'NAMESPACE/NAME', 'CODE', 'FINDINGS']
    : ['TIME', 'EVENT (STREAM:SEQ:INDEX)', 'SEVERITY', 'FINDING', 'USER', 'VERB', 'RESOURCE', 'NAMESPACE/NAME', 'MESSAGE']
  const rows = (results as Array<EventResult | FindingResult>).map((r) => {
    const e = (r.event ?? {}) as { user?: { username?: string }; verb?: string; objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string }; responseStatus?: { code?: number } }
    const ref = e.objectRef ?? {}
    const common = [r.time, `${r.stream}:${r.sequence}:${r.recordIndex}`]
    const what = [e.user?.username ?? '', e.verb ?? '', [ref.resource, ref.subresource].filter(Boolean).join('/'), [ref.namespace, ref.name].filter(Boolean).join('/')]
    if (kind === 'events') return [...common, ...what, String(e.responseStatus?.code ?? ''), r.findings.map((f) => `${f.id}(${f.severity})`).join(',')]
    const f = (r as FindingResult).finding
    return [...common, f.severity, f.id, ...what, f.message]
  })
  return columns(header, rows)
}

/** Rows under their header, each column as wide as its longest cell (at most 60); the last column runs on. */
function columns(header: string[], rows: string[][]): string {
  if (rows.length === 0) return '(no results)\n'
  const widths = header.map((h, i) => Math.min(60, Math.max(h.length, ...rows.map((r) => r[i]!.length))))
  const fmt = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.slice(0, widths[i]).padEnd(widths[i]!))).join('  ').trimEnd() + '\n'
  return fmt(header) + rows.map(fmt).join('')
}
