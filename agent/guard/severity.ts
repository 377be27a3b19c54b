// Severities of findings (the wire contract defines them, lowest first):
// rules, detectors and the alert threshold compare them.
import { SEVERITIES, type Severity } from '../../proto/wire.ts'

export { SEVERITIES, type Severity }

export function isSeverity(v: unknown): v is Severity {
  return typeof v === 'string' && (SEVERITIES as readonly string[]).includes(v)
}

/** Position in SEVERITIES (info 0 ... critical 4); -1 for a value that is not a severity. */
export function severityRank(v: string): number {
  return (SEVERITIES as readonly string[]).indexOf(v)
}
