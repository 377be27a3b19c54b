// Real kube-apiserver audit lines for end-to-end tests: a v1.26 sample in
// test/fixtures, cycled to any count.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { gunzipSync } from 'node:zlib'
import { expectedExport } from '../../agent/redact/expected-export.ts'
import type { AuditLogWriter } from '../../scripts/audit-log-writer.ts'

const FIXTURE = fileURLToPath(new URL('../fixtures/apiserver-v1.26/sample.jsonl.gz', import.meta.url))

const fixtureLines = (): string[] => gunzipSync(readFileSync(FIXTURE)).toString('utf8').split('\n').filter((l) => l.length > 0)

/**
 * `count` real audit lines, the fixture's lines cycled. Each cycle gets fresh
 * auditIDs (same length), as a real apiserver's would: a file's first bytes
 * then identify it, as they do in production.
 */
export function realAuditLines(count: number): string[] {
  const lines = fixtureLines()
  return Array.from({ length: count }, (_, i) => {
    const line = lines[i % lines.length]!
    const cycle = Math.floor(i / lines.length)
    return cycle === 0 ? line : line.replace(/"auditID":"[0-9a-f]{8}/, `"auditID":"${cycle.toString(16).padStart(8, '0')}`)
  })
}

/** SHA-256 of what the collector's export must hold for these lines (secret values redacted as the agent does). */
export function expectedExportSha256(lines: string[], stateDir: string): string {
  const expected = expectedExport(stateDir)
  for (const line of lines) expected.add(Buffer.from(line))
  return expected.sha256()
}

/** An event's identity in a test log: its auditID and stage (one request logs several stages under one auditID). */
export function eventKey(line: string): string {
  return `${/"auditID":"([^"]+)"/.exec(line)?.[1]}/${/"stage":"([^"]+)"/.exec(line)?.[1]}`
}

/**
 * What an export got wrong, in source line numbers: which lines are missing,
 * which came more than once, how many lines are not in the source at all.
 * Empty when each source line came out exactly once.
 */
export function exportDifference(exported: Map<string, number>, lines: string[]): string {
  const missing: number[] = []
  const repeated: number[] = []
  const known = new Set<string>()
  lines.forEach((line, i) => {
    const key = eventKey(line.slice(0, 512))
    known.add(key)
    const n = exported.get(key) ?? 0
    if (n === 0) missing.push(i)
    else if (n > 1) repeated.push(i)
  })
  let foreign = 0
  for (const [key, n] of exported) if (!known.has(key)) foreign += n
  const parts: string[] = []
  if (missing.length > 0) parts.push(`${missing.length} missing (source lines ${ranges(missing)})`)
  if (repeated.length > 0) parts.push(`${repeated.length} more than once (source lines ${ranges(repeated)})`)
  if (foreign > 0) parts.push(`${foreign} not in the source`)
  return parts.join('; ')
}

/** "3-9, 12, 40-41", at most five runs. */
function ranges(sorted: number[]): string {
  const runs: string[] = []
  let from = sorted[0]!
  for (let i = 1; i <= sorted.length; i++) {
    if (i < sorted.length && sorted[i] === sorted[i - 1]! + 1) continue
    const to = sorted[i - 1]!
    runs.push(from === to ? `${from}` : `${from}-${to}`)
    from = sorted[i]!
  }
  return runs.length > 5 ? `${runs.slice(0, 5).join(', ')} and ${runs.length - 5} more runs` : runs.join(', ')
}

/** Writes `lines` into the rotating `log` at about `rate` lines per second (the pace is checked every `every` lines), then closes it. */
export async function writePaced(log: AuditLogWriter, lines: string[], rate: number, every: number): Promise<void> {
  const started = Date.now()
  for (let i = 0; i < lines.length; i++) {
    log.write(lines[i]!)
    if (i % every === 0) {
      const ahead = i / rate - (Date.now() - started) / 1000
      if (ahead > 0) await new Promise((r) => setTimeout(r, ahead * 1000))
    }
  }
  await log.close()
}
