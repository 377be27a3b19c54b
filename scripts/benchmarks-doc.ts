// docs/benchmarks.md holds one table per benchmark, each under its own "## " heading;
// every run adds a dated row at the end of its table.
import { readFileSync, writeFileSync } from 'node:fs'

export function insertBenchmarkRow(doc: string, section: string, row: string): void {
  const lines = readFileSync(doc, 'utf8').split('\n')
  const heading = lines.indexOf(`## ${section}`)
  if (heading < 0) throw new Error(`${doc} has no "## ${section}" section: restore it from git`)
  const table = lines.findIndex((l, i) => i > heading && l.startsWith('|'))
  if (table < 0 || lines.slice(heading + 1, table).some((l) => l.startsWith('## '))) throw new Error(`${doc}: the "## ${section}" section has no table: restore it from git`)
  let end = table
  while (end < lines.length && lines[end]!.startsWith('|')) end++
  lines.splice(end, 0, row)
  writeFileSync(doc, lines.join('\n'))
}
