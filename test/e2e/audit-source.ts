// Real kube-apiserver audit lines for end-to-end tests: a v1.26 sample in
// test/fixtures, cycled to any count.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { gunzipSync } from 'node:zlib'
import { expectedExport } from '../../agent/redact/expected-export.ts'

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
