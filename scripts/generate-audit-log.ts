#!/usr/bin/env node
// Writes a realistic, rotating kube-apiserver audit log at a chosen rate.
//   node scripts/generate-audit-log.ts --out DIR --events N [--rate EVENTS_PER_S (0: as fast as possible)]
//     [--max-size BYTES] [--max-backups N] [--gzip-every N] [--mode rename|copytruncate|recreate] [--seed N]
// Prints a one-line JSON summary. The demo and the benchmarks call generateAuditLog in-process.
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createAuditEventGenerator } from './audit-events.ts'
import { AuditLogWriter, type AuditLogWriterOptions } from './audit-log-writer.ts'

export interface GenerateOptions extends Omit<AuditLogWriterOptions, 'path'> {
  dir: string
  events: number
  /** Events per second; 0 writes as fast as possible. */
  rate: number
  seed: number
  /** Called after each line with the writer (tests and benchmarks sample offsets and times). */
  onLine?: (writer: AuditLogWriter) => void
}

export interface GenerateSummary {
  events: number
  bytes: number
  rotations: number
  elapsedMs: number
  sha256: string
}

export async function generateAuditLog(o: GenerateOptions, signal?: AbortSignal): Promise<GenerateSummary> {
  mkdirSync(o.dir, { recursive: true })
  const writer = new AuditLogWriter({ path: join(o.dir, 'audit.log'), maxBytes: o.maxBytes, maxBackups: o.maxBackups, gzipEvery: o.gzipEvery, mode: o.mode })
  const events = createAuditEventGenerator({ seed: o.seed })
  const started = performance.now()
  const startMs = Date.now()
  const STEP_MS = 10
  let written = 0
  while (written < o.events && !signal?.aborted) {
    // Pace in steps: every 10 ms, write what is owed by now.
    const elapsed = performance.now() - started
    const owed = o.rate > 0 ? Math.min(o.events, Math.floor((elapsed / 1000) * o.rate)) : Math.min(o.events, written + 1000)
    for (; written < owed; written++) {
      writer.write(events.next(startMs + elapsed))
      o.onLine?.(writer)
    }
    await new Promise((r) => (o.rate > 0 ? setTimeout(r, STEP_MS) : setImmediate(r)))
  }
  await writer.close()
  return { events: written, bytes: writer.bytes, rotations: writer.rotations, elapsedMs: Math.round(performance.now() - started), sha256: writer.hash.digest('hex') }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      events: { type: 'string', default: '10000' },
      rate: { type: 'string', default: '0' },
      'max-size': { type: 'string', default: String(1024 * 1024) },
      'max-backups': { type: 'string', default: '0' },
      'gzip-every': { type: 'string', default: '0' },
      mode: { type: 'string', default: 'rename' },
      seed: { type: 'string', default: '1' },
    },
    strict: true,
  })
  const number = (flag: string, v: string): number => {
    const n = Number(v)
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${flag}: expected a whole number, got ${JSON.stringify(v)}`)
    return n
  }
  if (!values.out) throw new Error('--out DIR is required')
  const mode = values.mode
  if (mode !== 'rename' && mode !== 'copytruncate' && mode !== 'recreate') throw new Error(`--mode: expected rename, copytruncate or recreate, got ${JSON.stringify(mode)}`)
  const summary = await generateAuditLog({
    dir: values.out,
    events: number('events', values.events),
    rate: number('rate', values.rate),
    maxBytes: number('max-size', values['max-size']),
    maxBackups: number('max-backups', values['max-backups']),
    gzipEvery: number('gzip-every', values['gzip-every']),
    mode,
    seed: number('seed', values.seed),
  })
  process.stdout.write(`${JSON.stringify(summary)}\n`)
}

if (import.meta.main) {
  main().catch((err: Error) => {
    process.stderr.write(`generate-audit-log: ${err.message}\n`)
    process.exitCode = 2
  })
}
