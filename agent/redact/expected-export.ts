// What a collector's export must hold for given source lines: each line as the
// apiserver wrote it, except secret values replaced exactly as this node's agent
// replaces them (same salt). The demo, the benchmark and the end-to-end tests
// compare the export with this, byte for byte.
import { createHash } from 'node:crypto'
import { decodeAuditLine } from '../audit/event.ts'
import { createRedactor } from './redactor.ts'
import { loadOrCreateSalt } from './salt.ts'

export function expectedExport(stateDir: string) {
  const redact = createRedactor({ salt: loadOrCreateSalt(stateDir) })
  const hash = createHash('sha256')
  let redactedLines = 0
  return {
    /** One source line, without its newline. */
    add(line: Buffer): void {
      const decoded = decodeAuditLine(line)
      const redacted = 'event' in decoded ? redact(line, decoded.event) : undefined
      if (redacted) redactedLines++
      hash.update(redacted ? redacted.line : line).update('\n')
    },
    get redactedLines(): number {
      return redactedLines
    },
    sha256: (): string => hash.digest('hex'),
  }
}
