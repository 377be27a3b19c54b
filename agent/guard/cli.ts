// `auditrail rules lint DIR...` and `auditrail rules test [--rules DIR]... FILE...`:
// tools for rule authors. Both run the same loader and engine as the agent.
import { createReadStream } from 'node:fs'
import { open } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { createGunzip } from 'node:zlib'
import { decodeAuditLine, type AuditEvent } from '../audit/event.ts'
import { compileDetector } from '../anomaly/detector.ts'
import { Detectors } from '../anomaly/detectors.ts'
import { LineSplitter, type SplitRecord } from '../tail/line-splitter.ts'
import type { QuarantineStore } from '../tail/quarantine.ts'
import { readDefinitionDirectory } from './definition-files.ts'
import { compileRule, type Rule } from './rule.ts'
import { ADMISSION_ACTIONS, admissionPolicies, type AdmissionAction } from './admission.ts'
import { stringify } from 'yaml'
import { BUILTIN_RULES_DIR, loadRuleSet, type RuleFinding, type RuleSet } from './rule-set.ts'
import { eventTimeMs } from '../anomaly/detectors.ts'
import { DEFAULT_MAX_GROUPS, FindingGroups, groupFinding, MAX_GROUP_AUDIT_IDS, type GroupChange } from './finding-groups.ts'

const USAGE = `usage: auditrail rules lint [--detectors] DIR...
       auditrail rules test [--rules DIR]... [--detectors DIR]... [--builtin] [--each] [--json] FILE...
       auditrail rules admission [--rules DIR]... [--builtin] [--only ID]... [--action warn|audit|deny]

lint  compiles every rule (with --detectors: every detector) in each directory
      and reports every error with its file, id and place; exit 1 on any error
test  runs the rules and the anomaly detectors over audit log files (plain or
      gzipped; on the events' own time) and prints each finding group (first
      and last seen, count, severity, rule: or detector:, message, the audit
      IDs of its first ${MAX_GROUP_AUDIT_IDS} events) as its window closes, then the groups and
      matched events per rule and detector; exit 0. --each prints every
      matched event instead of the groups (tagged with its group).
      Without --rules the built-in rules run, without --detectors the built-in
      detectors; naming directories runs only those, unless --builtin.
      --json prints one group (or event) per line (the counts go to stderr)
admission
      prints a ValidatingAdmissionPolicy and its binding (admissionregistration.k8s.io/v1)
      for every rule that judges the object of a request, its CEL translated from the
      rule's condition, match block and exceptions; every other rule is listed with the
      reason, as a comment and on stderr. --action: warn (default: Warn + Audit), audit,
      or deny (Deny + Audit). --only ID (repeatable) exports only those rules
`
const MAX_LINE_BYTES = 4 * 1024 * 1024

export class RulesUsageError extends Error {
  constructor(message: string) {
    super(`${message}\n\n${USAGE}`)
    this.name = 'UsageError'
  }
}

export interface Output {
  out: (text: string) => void
  err: (text: string) => void
}

const stdio: Output = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) }

export async function rulesCommand(argv: string[], io: Output = stdio): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === 'lint') return lint(rest, io)
  if (sub === 'test') return test(rest, io)
  if (sub === 'admission') return admission(rest, io)
  if (sub === '--help' || sub === '-h' || sub === undefined) {
    io.out(USAGE)
    return sub === undefined ? 2 : 0
  }
  throw new RulesUsageError(`unknown subcommand ${JSON.stringify(sub)}`)
}

function lint(argv: string[], io: Output): number {
  const detectors = argv[0] === '--detectors'
  const dirs = detectors ? argv.slice(1) : argv
  if (dirs.length === 0) throw new RulesUsageError('lint needs at least one directory')
  let failed = false
  for (const dir of dirs) {
    const { items, errors } = detectors ? readDefinitionDirectory(dir, 'detector', compileDetector) : readDefinitionDirectory(dir, 'rule', compileRule)
    for (const e of errors) io.out(`error: ${e.message}\n`)
    if (errors.length > 0) failed = true
    else io.out(`ok: ${dir}: ${items.length} ${detectors ? 'detectors' : 'rules'} compile\n`)
  }
  return failed ? 1 : 0
}

function admission(argv: string[], io: Output): number {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: { rules: { type: 'string', multiple: true }, builtin: { type: 'boolean' }, only: { type: 'string', multiple: true }, action: { type: 'string', default: 'warn' } }, strict: true, allowPositionals: false })
  } catch (err) {
    throw new RulesUsageError((err as Error).message)
  }
  const { values } = parsed
  const action = values.action as AdmissionAction
  if (!ADMISSION_ACTIONS.includes(action)) throw new RulesUsageError(`--action: expected ${ADMISSION_ACTIONS.join(', ')}, got ${JSON.stringify(values.action)}`)
  const dirs = values.rules === undefined ? [BUILTIN_RULES_DIR] : [...(values.builtin ? [BUILTIN_RULES_DIR] : []), ...values.rules]
  let rules: readonly Rule[]
  try {
    rules = loadRuleSet(dirs).rules
  } catch (err) {
    if (!(err instanceof AggregateError)) throw err
    for (const e of err.errors as Error[]) io.err(`error: ${e.message}\n`)
    io.err('the rules do not load: `auditrail rules lint DIR` lists every error\n')
    return 1
  }
  if (values.only) {
    const missing = values.only.filter((id) => !rules.some((r) => r.id === id))
    if (missing.length > 0) throw new RulesUsageError(`--only: no enabled rule ${missing.join(', ')} in ${dirs.join(', ')}`)
    rules = rules.filter((r) => values.only!.includes(r.id))
  }
  const { policies, skipped } = admissionPolicies(rules, action)
  const header = [
    `# Generated by: auditrail rules admission ${argv.join(' ')}`.trimEnd(),
    `# ${policies.length} rules exported as ValidatingAdmissionPolicies (${action}); ${skipped.length} cannot be judged at admission:`,
    ...skipped.map((s) => `#   ${s.rule.id}: ${s.reason}`),
  ]
  io.out(`${header.join('\n')}\n${policies.flatMap((p) => [p.policy, p.binding]).map((o) => `---\n${stringify(o, { lineWidth: 0 })}`).join('')}`)
  for (const s of skipped) io.err(`not exported: ${s.rule.id}: ${s.reason}\n`)
  io.err(`${policies.length} policies and bindings printed (${action}); ${skipped.length} rules not exported\n`)
  return 0
}

async function test(argv: string[], io: Output): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: { rules: { type: 'string', multiple: true }, detectors: { type: 'string', multiple: true }, builtin: { type: 'boolean' }, each: { type: 'boolean' }, json: { type: 'boolean' } }, strict: true, allowPositionals: true })
  } catch (err) {
    throw new RulesUsageError((err as Error).message)
  }
  const { values, positionals: files } = parsed
  if (files.length === 0) throw new RulesUsageError('test needs at least one audit log file')
  const dirs = values.rules === undefined ? [BUILTIN_RULES_DIR] : [...(values.builtin ? [BUILTIN_RULES_DIR] : []), ...values.rules]
  let rules: RuleSet
  let detectors: Detectors
  try {
    rules = loadRuleSet(dirs)
    detectors = new Detectors({ builtin: values.detectors === undefined || values.builtin === true, dirs: values.detectors ?? [] })
  } catch (err) {
    if (!(err instanceof AggregateError)) throw err
    for (const e of err.errors as Error[]) io.err(`error: ${e.message}\n`)
    io.err('the rules or detectors do not load: `auditrail rules lint DIR` lists every error\n')
    return 1
  }
  const counts = new Map<string, { severity: string; events: number; groups: number }>()
  const count = (source: string, id: string, severity: string) => {
    const name = `${source}:${id}`
    const c = counts.get(name) ?? { severity, events: 0, groups: 0 }
    counts.set(name, c)
    return c
  }
  const totals = { events: 0, unparsed: 0, oversized: 0 }
  const findings: RuleFinding[] = []
  const groups = new FindingGroups((f) => (f.source === 'rule' ? rules : detectors).groupOf(f.id))
  const changes: GroupChange[] = []
  // A group is printed when it ends: only then are its count and last time known.
  const report = () => {
    for (const c of changes) {
      if (c.kind === 'open') count(c.group.first.source, c.group.first.id, c.group.first.severity).groups++
      if (c.kind === 'end' && !values.each) io.out(values.json ? `${JSON.stringify(groupJson(c))}\n` : `${groupRow(c)}\n`)
    }
    changes.length = 0
  }
  for (const file of files) {
    await eachLine(file, (line, lineNumber) => {
      if (line === undefined) {
        totals.oversized++
        return
      }
      const decoded = decodeAuditLine(line)
      if ('unparsed' in decoded) {
        totals.unparsed++
        return
      }
      totals.events++
      findings.length = 0
      const timeMs = eventTimeMs(decoded.event)
      rules.inspect(decoded.event, findings)
      detectors.inspect(decoded.event, findings, timeMs)
      if (timeMs !== undefined) groups.advance(timeMs, changes)
      for (const f of findings) {
        count(f.source, f.id, f.severity).events++
        groups.add(f, decoded.event, timeMs, changes)
        if (values.each) io.out(values.json ? `${JSON.stringify(findingJson(f, decoded.event, file, lineNumber))}\n` : `${tableRow(f, decoded.event)}\n`)
      }
      report()
    })
  }
  groups.advance(Infinity, changes)
  report()
  const summary = [
    `${totals.events} events, ${totals.unparsed} lines not audit events, ${totals.oversized} lines over ${MAX_LINE_BYTES} bytes skipped; ${rules.rules.length} rules, ${detectors.detectors.length} detectors${groups.evictions > 0 ? `; ${groups.evictions} groups evicted unreported (more than ${DEFAULT_MAX_GROUPS} open at once)` : ''}`,
    `  groups    events  severity  rule or detector`,
    ...[...counts].sort((a, b) => b[1].groups - a[1].groups || b[1].events - a[1].events).map(([id, c]) => `${String(c.groups).padStart(8)}  ${String(c.events).padStart(8)}  ${c.severity.padEnd(8)}  ${id}`),
  ].join('\n')
  ;(values.json ? io.err : io.out)(`${summary}\n`)
  return 0
}

/** A group as it ended: the latest finding's message and details (a burst's extent), the first audit IDs. */
function groupJson(c: GroupChange) {
  const g = c.group
  const f = groupFinding(c)
  return { group: g.groupId, source: f.source, id: f.id, severity: f.severity, message: f.message, key: g.key, count: g.count, firstSeen: new Date(g.firstMs).toISOString(), lastSeen: new Date(g.lastMs).toISOString(), auditIDs: g.auditIds, details: f.details }
}

function groupRow(c: GroupChange): string {
  const g = c.group
  const f = groupFinding(c)
  const more = g.count > g.auditIds.length ? ` (and ${g.count - g.auditIds.length} more)` : ''
  return `${new Date(g.firstMs).toISOString()}  ${new Date(g.lastMs).toISOString()}  ${String(g.count).padStart(6)}  ${f.severity.padEnd(8)}  ${f.source}:${f.id}  ${f.message}\n    audit IDs: ${g.auditIds.join(' ')}${more}`
}

function findingJson(f: RuleFinding, event: AuditEvent, file: string, line: number) {
  return { source: f.source, id: f.id, severity: f.severity, message: f.message, auditID: f.auditId, stage: event.stage, time: event.stageTimestamp, file, line, details: f.details }
}

function tableRow(f: RuleFinding, event: AuditEvent): string {
  return `${event.stageTimestamp ?? '-'}  ${f.severity.padEnd(8)}  ${f.source}:${f.id}  ${f.auditId}  ${event.stage}  ${f.message}`
}

/** `rules test` keeps nothing of an oversized line: it only counts it. */
const DISCARD: QuarantineStore = {
  begin: () => {
    let length = 0
    return { write: (bytes) => void (length += bytes.length), end: () => ({ length, sha256: new Uint8Array(), reason: 'over the line limit', storedAs: '' }) }
  },
}

/** Calls `onLine` with each line (undefined for a line over the limit) and its 1-based number. */
async function eachLine(file: string, onLine: (line: Buffer | undefined, lineNumber: number) => void): Promise<void> {
  const head = Buffer.alloc(2)
  const fh = await open(file, 'r')
  try {
    await fh.read(head, 0, 2, 0)
  } finally {
    await fh.close()
  }
  const raw = createReadStream(file, { highWaterMark: 256 * 1024 })
  const stream = head[0] === 0x1f && head[1] === 0x8b ? raw.pipe(createGunzip()) : raw
  const splitter = new LineSplitter({ maxLineBytes: MAX_LINE_BYTES, quarantine: DISCARD, startOffset: 0, describeSource: () => file })
  const records: SplitRecord[] = []
  let lineNumber = 0
  const deliver = () => {
    for (const r of records) onLine(r.kind === 'line' ? r.bytes : undefined, ++lineNumber)
    records.length = 0
  }
  for await (const chunk of stream) {
    splitter.feed(chunk as Buffer, records)
    deliver()
  }
  splitter.flush(records)
  deliver()
}
