// `auditrail collector`, `auditrail verify` and `auditrail export`. Each returns
// its exit code: 0 success, 1 failure (verify: the store does not hold), 2 usage.
import { readFileSync } from 'node:fs'
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util'
import { KeyError, loadTrustedKeys } from '../proto/keys.ts'
import { createLogger } from '../agent/observe/logger.ts'
import { ExportError, exportStream } from './export.ts'
import { startCollector, type TlsOptions } from './server.ts'
import { StoreError } from './store.ts'
import { verifyStore } from './verify.ts'

const COLLECTOR_USAGE = `usage: auditrail collector --listen HOST:PORT --store DIR --trust PUBKEY_FILE [--trust PUBKEY_FILE...]
                           [--tls-cert FILE --tls-key FILE [--client-ca FILE]] [--log-level LEVEL]
  --client-ca  require client certificates (mTLS) signed by this CA
`
const VERIFY_USAGE = `usage: auditrail verify DIR --trust PUBKEY_FILE [--trust PUBKEY_FILE...] [--stream ID]
  exits 0 only if every stream (or the one named) is whole: checksums, signatures, links, no gap
`
const EXPORT_USAGE = `usage: auditrail export DIR [--stream ID] [--records]
  prints the stream's event lines in order, exactly as shipped; --records adds
  heartbeats, gaps, quarantined, unparsed, redacted-line and finding notes as '#auditrail {json}' lines
`

class UsageError extends Error {}

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
    if (err instanceof KeyError || err instanceof ExportError || err instanceof StoreError) {
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
  return run('collector', COLLECTOR_USAGE, argv, async () => {
    const { values } = parse(argv, {
      listen: { type: 'string' },
      store: { type: 'string' },
      trust: { type: 'string', multiple: true },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'client-ca': { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
    }, false)
    const listen = parseListen(values.listen as string | undefined)
    const storeDir = values.store as string | undefined
    if (!storeDir) throw new UsageError('--store DIR is required')
    const trustedKeys = trustedKeysFrom(values)
    const tls = tlsFrom(values)
    const log = createLogger(values['log-level'] as string, 'collector')
    const collector = await startCollector({ listen, storeDir, trustedKeys, logger: log, ...(tls ? { tls } : {}) })
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      const stop = (s: NodeJS.Signals) => {
        process.off('SIGTERM', stop)
        process.off('SIGINT', stop)
        resolve(s)
      }
      process.on('SIGTERM', stop)
      process.on('SIGINT', stop)
    })
    log.info({ signal }, 'shutting down: finishing requests in flight')
    await collector.close()
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
  if (!cert && !key && !ca) return undefined
  if (!cert || !key) throw new UsageError('--tls-cert and --tls-key go together' + (ca ? ' (and --client-ca needs them)' : ''))
  const read = (flag: string, file: string) => {
    try {
      return readFileSync(file)
    } catch (err) {
      throw new UsageError(`${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }
  return { cert: read('--tls-cert', cert), key: read('--tls-key', key), ...(ca ? { ca: read('--client-ca', ca), requireClientCert: true } : {}) }
}

export function verifyCommand(argv: string[]): Promise<number> {
  return run('verify', VERIFY_USAGE, argv, async () => {
    const { values, positionals } = parse(argv, { trust: { type: 'string', multiple: true }, stream: { type: 'string' } }, true)
    const dir = onePositional(positionals, 'store directory')
    const trustedKeys = trustedKeysFrom(values)
    const result = await verifyStore(dir, trustedKeys, values.stream !== undefined ? { stream: values.stream as string } : {})
    for (const s of result.streams) {
      process.stdout.write(`ok   stream ${s.stream}: sequences 1..${s.headSequence}, ${s.lines} lines, head digest ${s.headDigest}\n`)
    }
    const p = result.problem
    if (p) {
      const where = [`stream ${p.stream}`, p.segment && `segment ${p.segment}`, p.offset !== undefined && `byte ${p.offset}`, p.sequence !== undefined && `sequence ${p.sequence}`].filter(Boolean).join(', ')
      process.stdout.write(`FAIL ${where}: ${p.reason}\n`)
      return 1
    }
    return 0
  })
}

export function exportCommand(argv: string[]): Promise<number> {
  return run('export', EXPORT_USAGE, argv, async () => {
    const { values, positionals } = parse(argv, { stream: { type: 'string' }, records: { type: 'boolean' } }, true)
    const dir = onePositional(positionals, 'store directory')
    await exportStream(dir, { out: process.stdout, records: values.records === true, ...(values.stream !== undefined ? { stream: values.stream as string } : {}) })
    return 0
  })
}
