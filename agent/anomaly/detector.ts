// One anomaly detector: parsed from YAML into typed values, compiled once.
//
//   id: forbidden-burst                 stable, kebab-case
//   title, severity, description, mitre as for rules
//   match: {...}, exceptions: [...]     the cheap filters of rules (agent/guard/event-filter.ts)
//   filter: CEL over `event`            optional, as a rule's condition
//   key: [user]                         what is counted per: user, sourceIP, userAgent, namespace, verb, resource
//   window: 60s                         ms, s, m or h; windows slide on event time (stageTimestamp)
//   trigger:                            exactly one of
//     threshold: 20                     more than 20 matching events per key in the window
//     baseline: { sigmas: 6, factor: 3, minCount: 100, warmupWindows: 30 }
//                                       this window's count far above the key's own history
//                                       (exponentially weighted mean and variance of past windows)
//     firstSeen: sourceIP               a value never seen before for the key, once the key is known
//     learning: 1h                      (with firstSeen) how long a new key is only learned
//     unanswered: 60s                   a RequestReceived with no ResponseStarted/ResponseComplete within this time
//     silence: 5m                       no audit event at all for this long (on the next event)
//   coolDown: 10m                       a baseline or firstSeen key that fired stays quiet this long; a threshold
//                                       detector reports every event of a burst instead, grouped (default: 10
//                                       times the window; also the default group window)
//   maxKeys: 5000                       state bound; the least recently seen key goes first
//   group: { by, window | quiet }       optional; how its findings group (agent/guard/finding-groups.ts;
//                                       default: by its key, for its coolDown; a threshold detector's until
//                                       its window goes quiet)
//   enabled: false                      optional
import type { AuditEvent } from '../audit/event.ts'
import { CelCompileError, compilePredicate, type EventPredicate } from '../guard/cel.ts'
import { compileExceptions, compileMatch, DefinitionError, duration, MAX_TEXT_LENGTH, preview, stringList, type EventMatch, type EventTest } from '../guard/event-filter.ts'
import { RULE_ID_PATTERN } from '../guard/rule.ts'
import { compileGroup, type GroupSpec } from '../guard/finding-groups.ts'
import { isSeverity, SEVERITIES, type Severity } from '../../proto/wire.ts'

const KEYS = new Set(['id', 'title', 'severity', 'description', 'mitre', 'match', 'filter', 'exceptions', 'key', 'window', 'trigger', 'coolDown', 'maxKeys', 'enabled', 'group'])
const MAX_KEYS_LIMIT = 1_000_000
export const DEFAULT_MAX_KEYS = 5000

/** Event fields a detector may count per. */
export const KEY_FIELDS: Record<string, (ev: AuditEvent) => string | undefined> = {
  user: (ev) => ev.user?.username,
  sourceIP: (ev) => ev.sourceIPs?.[0],
  userAgent: (ev) => ev.userAgent,
  namespace: (ev) => ev.objectRef?.namespace,
  verb: (ev) => ev.verb,
  resource: (ev) => ev.objectRef?.resource,
}

export type Trigger =
  | { kind: 'threshold'; count: number }
  | { kind: 'baseline'; sigmas: number; factor: number; minCount: number; warmupWindows: number }
  | { kind: 'firstSeen'; field: string; learningMs: number }
  | { kind: 'unanswered'; timeoutMs: number }
  | { kind: 'silence'; afterMs: number }

export interface Detector {
  id: string
  title: string
  severity: Severity
  description: string
  mitre: string[]
  enabled: boolean
  file: string
  match: EventMatch
  filter: EventPredicate | undefined
  exceptions: EventTest[]
  key: string[]
  windowMs: number
  trigger: Trigger
  coolDownMs: number
  maxKeys: number
  group: GroupSpec
}

export function compileDetector(raw: unknown, file: string): Detector {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new DefinitionError(file, undefined, 'a detector must be a mapping with id, title, severity, key, window and trigger')
  const r = raw as Record<string, unknown>
  const id = r.id
  if (typeof id !== 'string' || !RULE_ID_PATTERN.test(id) || id.length > 100) throw new DefinitionError(file, undefined, `id: expected a kebab-case name (e.g. forbidden-burst), got ${preview(id)}`)
  const fail = (message: string): never => {
    throw new DefinitionError(file, id, message, 'detector')
  }
  for (const key of Object.keys(r)) if (!KEYS.has(key)) fail(`unknown field ${JSON.stringify(key)}; a detector has ${[...KEYS].join(', ')}`)
  const text = (key: string, required: boolean): string => {
    const v = r[key]
    if (v === undefined && !required) return ''
    if (typeof v !== 'string' || v.trim() === '' || v.length > MAX_TEXT_LENGTH) return fail(`${key}: expected a non-empty string of at most ${MAX_TEXT_LENGTH} characters`)
    return v
  }
  if (!isSeverity(r.severity)) return fail(`severity: expected one of ${SEVERITIES.join(', ')}, got ${preview(r.severity)}`)
  const enabled = r.enabled ?? true
  if (typeof enabled !== 'boolean') return fail('enabled: expected true or false')
  const cel = (field: string, source: string): EventPredicate => {
    try {
      return compilePredicate(source)
    } catch (err) {
      if (err instanceof CelCompileError) return fail(`${field}: ${err.message} (line ${err.line}, column ${err.column} of the expression)`)
      throw err
    }
  }
  const key = stringList(r.key, 'key', fail) ?? []
  for (const k of key) if (!Object.hasOwn(KEY_FIELDS, k)) fail(`key: ${JSON.stringify(k)} is not a key field; use ${Object.keys(KEY_FIELDS).join(', ')}`)
  const trigger = compileTrigger(r.trigger, fail)
  if (key.length === 0 && trigger.kind !== 'unanswered' && trigger.kind !== 'silence') fail(`key: a ${trigger.kind} detector counts per key: name one or more of ${Object.keys(KEY_FIELDS).join(', ')}`)
  const windowMs = r.window === undefined && (trigger.kind === 'unanswered' || trigger.kind === 'silence') ? 0 : duration(r.window, 'window', fail)
  const coolDownMs = r.coolDown === undefined ? Math.max(windowMs * 10, 60_000) : duration(r.coolDown, 'coolDown', fail)
  const maxKeys = r.maxKeys ?? DEFAULT_MAX_KEYS
  if (!Number.isInteger(maxKeys) || (maxKeys as number) < 1 || (maxKeys as number) > MAX_KEYS_LIMIT) fail(`maxKeys: expected a whole number from 1 to ${MAX_KEYS_LIMIT}`)
  return {
    id,
    title: text('title', true),
    severity: r.severity,
    description: text('description', false),
    mitre: stringList(r.mitre, 'mitre', fail) ?? [],
    enabled,
    file,
    match: compileMatch(r.match, fail),
    filter: r.filter === undefined ? undefined : cel('filter', text('filter', true)),
    exceptions: compileExceptions(r.exceptions, fail, cel),
    key,
    windowMs,
    trigger,
    coolDownMs,
    maxKeys: maxKeys as number,
    // A burst is one group until its window goes quiet; other findings are one per key per coolDown.
    group: compileGroup(r.group, 'detector', trigger.kind === 'threshold' ? { windowMs, quiet: true } : { windowMs: coolDownMs, quiet: false }, fail),
  }
}

function compileTrigger(raw: unknown, fail: (message: string) => never): Trigger {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail('trigger: expected a mapping with one of threshold, baseline, firstSeen, unanswered, silence')
  const t = raw as Record<string, unknown>
  const kinds = ['threshold', 'baseline', 'firstSeen', 'unanswered', 'silence'].filter((k) => k in t)
  if (kinds.length !== 1) return fail(`trigger: expected exactly one of threshold, baseline, firstSeen, unanswered, silence; got ${kinds.join(', ') || 'none'}`)
  const allowed = kinds[0] === 'firstSeen' ? ['firstSeen', 'learning'] : kinds
  for (const k of Object.keys(t)) if (!allowed.includes(k)) fail(`trigger: unknown field ${JSON.stringify(k)} next to ${kinds[0]}`)
  const count = (v: unknown, field: string, min: number): number => (Number.isInteger(v) && (v as number) >= min && (v as number) <= 1e9 ? (v as number) : fail(`${field}: expected a whole number of at least ${min}`))
  switch (kinds[0]) {
    case 'threshold':
      return { kind: 'threshold', count: count(t.threshold, 'trigger.threshold', 1) }
    case 'baseline': {
      const b = (t.baseline ?? {}) as Record<string, unknown>
      if (typeof b !== 'object' || Array.isArray(b)) return fail('trigger.baseline: expected a mapping of sigmas, factor, minCount, warmupWindows')
      for (const k of Object.keys(b)) if (!['sigmas', 'factor', 'minCount', 'warmupWindows'].includes(k)) fail(`trigger.baseline: unknown field ${JSON.stringify(k)}`)
      const num = (v: unknown, field: string, dflt: number) => (v === undefined ? dflt : typeof v === 'number' && v > 0 && v < 1000 ? v : fail(`trigger.baseline.${field}: expected a positive number`))
      return { kind: 'baseline', sigmas: num(b.sigmas, 'sigmas', 6), factor: num(b.factor, 'factor', 3), minCount: b.minCount === undefined ? 100 : count(b.minCount, 'trigger.baseline.minCount', 1), warmupWindows: b.warmupWindows === undefined ? 30 : count(b.warmupWindows, 'trigger.baseline.warmupWindows', 1) }
    }
    case 'firstSeen':
      if (typeof t.firstSeen !== 'string' || !Object.hasOwn(KEY_FIELDS, t.firstSeen)) return fail(`trigger.firstSeen: expected a field name: ${Object.keys(KEY_FIELDS).join(', ')}`)
      return { kind: 'firstSeen', field: t.firstSeen, learningMs: t.learning === undefined ? 3_600_000 : duration(t.learning, 'trigger.learning', fail) }
    case 'unanswered':
      return { kind: 'unanswered', timeoutMs: duration(t.unanswered, 'trigger.unanswered', fail) }
    default:
      return { kind: 'silence', afterMs: duration(t.silence, 'trigger.silence', fail) }
  }
}
