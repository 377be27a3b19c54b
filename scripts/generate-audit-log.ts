#!/usr/bin/env node
// Writes a realistic kube-apiserver audit log, rotated the way the apiserver
// rotates it, at a chosen rate:
//   node scripts/generate-audit-log.ts --out DIR --events N [--rate EVENTS_PER_S (0: as fast as possible)]
//     [--max-size BYTES (default 1 MiB)] [--max-backups N] [--max-age-days N] [--compress] [--gzip-every N]
//     [--mode rename|copytruncate|recreate] [--seed N] [--source FILE]
// Prints a one-line JSON summary. The demo, the benchmark and end-to-end tests
// call generateAuditLog in-process.
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createAuditEventGenerator } from './audit-events.ts'
import { AuditLogWriter, type AuditLogWriterOptions, type RotationMode } from './audit-log-writer.ts'

export interface GenerateAuditLogOptions extends Omit<AuditLogWriterOptions, 'path'> {
  /** Directory of the live audit.log and its backups; created if missing. */
  dir: string
  events: number
  /** Events per second, written in 10 ms steps; 0 (default) writes as fast as possible. */
  rate?: number
  /** PRNG seed; default 1. */
  seed?: number
  /** Start of the events' virtual clock when rate is 0 (Unix ms); default now. Paced runs stamp events with the wall clock. */
  startTimeMs?: number
  nodeCount?: number
  /** Weave the attack story (scripts/audit-events.ts, ATTACKER) into the traffic after this many requests. */
  attackAfter?: number
  /** Called after each line is written, with the writer (its position() is where the line ends) and the line, newline included. */
  onLine?: (writer: AuditLogWriter, line: Buffer) => void
  /** Also append every line written here, in order: the concatenation an export must equal byte for byte. */
  sourceFile?: string
}

export interface GenerateAuditLogSummary {
  events: number
  bytes: number
  rotations: number
  elapsedMs: number
  /** SHA-256 of every byte written, in order. */
  sha256: string
}

/**
 * Paced, the log is written every few ms. A busy apiserver writes each event as its request ends, so at
 * thousands of events/s the writes come about every millisecond, and a reader's cost depends on it
 * (every write is a file-change notification): the step shrinks to 1 ms as the rate grows.
 */
const stepMs = (rate: number) => Math.max(1, Math.min(10, 1000 / rate))
/** Lines written between yields when unpaced, so background gzip and the caller's I/O keep moving. */
const BURST = 500

/** Writes `events` generated events to `<dir>/audit.log` with rotation; stops early, cleanly, when `signal` aborts. */
export async function generateAuditLog(options: GenerateAuditLogOptions, signal?: AbortSignal): Promise<GenerateAuditLogSummary> {
  const { dir, events, rate = 0, seed = 1, startTimeMs, nodeCount, attackAfter, onLine, sourceFile, ...writerOptions } = options
  if (!Number.isSafeInteger(events) || events < 0) throw new Error(`generate audit log: events must be a whole number >= 0, got ${String(events)}`)
  if (!(rate >= 0) || !Number.isFinite(rate)) throw new Error(`generate audit log: rate must be events per second >= 0, got ${String(rate)}`)
  mkdirSync(dir, { recursive: true })
  // Paced, the events' clock follows the wall clock at the chosen rate; unpaced, it runs at the measured 2,900/s from startTimeMs.
  const generator = createAuditEventGenerator({ seed, startTimeMs: startTimeMs ?? Date.now(), ...(rate > 0 ? { eventsPerSecond: rate } : {}), ...(nodeCount === undefined ? {} : { nodeCount }), ...(attackAfter === undefined ? {} : { attackAfter }) })
  const writer = new AuditLogWriter({ ...writerOptions, path: join(dir, 'audit.log') })
  const source = sourceFile === undefined ? undefined : openSync(sourceFile, 'w', 0o600)
  const started = performance.now()
  let written = 0
  try {
    while (written < events && !signal?.aborted) {
      const elapsedMs = performance.now() - started
      // Paced: whatever is owed by now, stamped with the wall clock. Unpaced: a burst on the virtual clock.
      const target = rate > 0 ? Math.min(events, Math.floor((elapsedMs / 1000) * rate)) : Math.min(events, written + BURST)
      const nowMs = rate > 0 ? Date.now() : undefined
      for (; written < target; written++) {
        const line = writer.write(generator.next(nowMs))
        if (source !== undefined) writeSync(source, line)
        onLine?.(writer, line)
      }
      if (written < events) await new Promise((resolve) => (rate > 0 ? setTimeout(resolve, stepMs(rate)) : setImmediate(resolve)))
    }
  } finally {
    if (source !== undefined) closeSync(source)
    await writer.close()
  }
  return { events: written, bytes: writer.bytes, rotations: writer.rotations, elapsedMs: Math.round(performance.now() - started), sha256: writer.hash.digest('hex') }
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string' },
      events: { type: 'string' },
      rate: { type: 'string', default: '0' },
      'max-size': { type: 'string', default: String(1024 * 1024) },
      'max-backups': { type: 'string', default: '0' },
      'max-age-days': { type: 'string', default: '0' },
      compress: { type: 'boolean', default: false },
      'gzip-every': { type: 'string', default: '0' },
      mode: { type: 'string', default: 'rename' },
      seed: { type: 'string', default: '1' },
      source: { type: 'string' },
    },
    strict: true,
  })
  const whole = (flag: string, v: string | undefined, min = 0): number => {
    const n = Number(v)
    if (v === undefined || v.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new Error(`--${flag}: expected a whole number >= ${min}, got ${JSON.stringify(v ?? '')}`)
    return n
  }
  if (!values.out) throw new Error('--out DIR is required: the directory for audit.log and its backups')
  if (values.events === undefined) throw new Error('--events N is required: how many events to write')
  const mode = values.mode
  if (mode !== 'rename' && mode !== 'copytruncate' && mode !== 'recreate') throw new Error(`--mode: expected rename, copytruncate or recreate, got ${JSON.stringify(mode)}`)
  const abort = new AbortController()
  const stop = () => abort.abort()
  process.once('SIGINT', stop).once('SIGTERM', stop)
  const summary = await generateAuditLog(
    {
      dir: values.out,
      events: whole('events', values.events),
      rate: whole('rate', values.rate),
      maxBytes: whole('max-size', values['max-size'], 1),
      maxBackups: whole('max-backups', values['max-backups']),
      maxAgeDays: whole('max-age-days', values['max-age-days']),
      compress: values.compress,
      gzipEvery: whole('gzip-every', values['gzip-every']),
      mode: mode satisfies RotationMode,
      seed: whole('seed', values.seed),
      ...(values.source === undefined ? {} : { sourceFile: values.source }),
    },
    abort.signal,
  )
  process.stdout.write(`${JSON.stringify(summary)}\n`)
  return 0
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (err: unknown) => {
      process.stderr.write(`generate-audit-log: ${err instanceof Error ? err.message : String(err)}\n`)
      process.exitCode = 2
    },
  )
}
