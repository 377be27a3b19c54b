// One guardrail rule: parsed from YAML into typed values, compiled once.
//
//   id: privileged-container            stable, kebab-case
//   title: A privileged container       one line
//   severity: high                      info | low | medium | high | critical
//   description: ...                    why it matters, what to do
//   mitre: [T1611]                      optional technique ids
//   match: {...}                        cheap filters (event-filter.ts)
//   condition: CEL over `event`         optional; a missing field makes it false
//   exceptions: [...]                   optional; any one that holds suppresses the finding (event-filter.ts)
//   output: "text {{ CEL }} text"       the finding's message (default: who did which verb on which URI)
//   group: { by, window|quiet, threshold } optional; how its findings group into one (finding-groups.ts)
//   enabled: false                      optional; turns a rule (e.g. a built-in one of the same id) off
import type { AuditEvent } from '../audit/event.ts'
import { CelCompileError, compilePredicate, compileText, type EventPredicate, type EventText } from './cel.ts'
import { compileExceptions, compileMatch, DefinitionError, MAX_TEXT_LENGTH, preview, stringList, type EventMatch, type EventTest, type ExceptionSpec } from './event-filter.ts'
import { isSeverity, SEVERITIES, type Severity } from '../../proto/wire.ts'
import { compileGroup, type GroupSpec } from './finding-groups.ts'

export const RULE_ID_PATTERN = /^[a-z0-9]+(-[a-z0-9]+)*$/
const MAX_ID_LENGTH = 100
const MAX_MESSAGE_LENGTH = 1024
const MAX_PLACEHOLDERS = 32
const DEFAULT_OUTPUT = '{{ event.user.username }} did {{ event.verb }} {{ event.requestURI }} ({{ event.responseStatus.code }})'
const RULE_KEYS = new Set(['id', 'title', 'severity', 'description', 'mitre', 'match', 'condition', 'exceptions', 'output', 'enabled', 'group'])

export interface Rule {
  id: string
  title: string
  severity: Severity
  description: string
  mitre: string[]
  enabled: boolean
  file: string
  match: EventMatch
  /** The rule's CEL texts (condition, exceptions, output placeholders), for tools that ask what a rule reads. */
  expressions: string[]
  condition: EventPredicate | undefined
  /** The condition's CEL text (undefined: none), for `rules admission`, which translates it. */
  conditionText: string | undefined
  exceptions: EventTest[]
  /** The exceptions as written, for the same translation. */
  exceptionSpecs: ExceptionSpec[]
  message: (event: AuditEvent) => string
  group: GroupSpec
}

/** Parses and compiles one rule document. Throws RuleError naming the file, the rule and the field. */
export function compileRule(raw: unknown, file: string): Rule {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new DefinitionError(file, undefined, 'a rule must be a mapping with id, title, severity, match, condition and output')
  const r = raw as Record<string, unknown>
  const id = r.id
  if (typeof id !== 'string' || !RULE_ID_PATTERN.test(id) || id.length > MAX_ID_LENGTH) throw new DefinitionError(file, undefined, `id: expected a kebab-case name (e.g. privileged-container), got ${preview(id)}`)
  const fail = (message: string): never => {
    throw new DefinitionError(file, id, message)
  }
  for (const key of Object.keys(r)) if (!RULE_KEYS.has(key)) fail(`unknown field ${JSON.stringify(key)}; a rule has ${[...RULE_KEYS].join(', ')}`)
  const text = (key: string, required: boolean): string => {
    const v = r[key]
    if (v === undefined && !required) return ''
    if (typeof v !== 'string' || v.trim() === '') return fail(`${key}: expected a non-empty string`)
    if (v.length > MAX_TEXT_LENGTH) return fail(`${key}: longer than ${MAX_TEXT_LENGTH} characters`)
    return v
  }
  const severity = r.severity
  if (!isSeverity(severity)) return fail(`severity: expected one of ${SEVERITIES.join(', ')}, got ${preview(severity)}`)
  const enabled = r.enabled ?? true
  if (typeof enabled !== 'boolean') return fail('enabled: expected true or false')
  const expressions: string[] = []
  const compile = <T>(field: string, source: string, compiler: (text: string) => T): T => {
    expressions.push(source)
    try {
      return compiler(source)
    } catch (err) {
      if (err instanceof CelCompileError) return fail(`${field}: ${err.message} (line ${err.line}, column ${err.column} of the expression)`)
      throw err
    }
  }
  const conditionText = r.condition === undefined ? undefined : text('condition', true)
  const condition = conditionText === undefined || conditionText.trim() === 'true' ? undefined : compile('condition', conditionText, compilePredicate)
  return {
    id,
    title: text('title', true),
    severity,
    description: text('description', false),
    mitre: stringList(r.mitre, 'mitre', fail) ?? [],
    enabled,
    file,
    match: compileMatch(r.match, fail),
    expressions,
    condition,
    conditionText: condition === undefined ? undefined : conditionText,
    exceptions: compileExceptions(r.exceptions, fail, (field, source) => compile(field, source, compilePredicate)),
    // compileExceptions has just checked their shape.
    exceptionSpecs: (r.exceptions ?? []) as ExceptionSpec[],
    message: compileTemplate(r.output === undefined ? DEFAULT_OUTPUT : text('output', true), (field, source) => compile(field, source, compileText), fail),
    group: compileGroup(r.group, 'rule', undefined, fail),
  }
}

/** `text {{ CEL }} text`: placeholders compiled at load, evaluated only for a finding. */
function compileTemplate(template: string, compile: (field: string, source: string) => EventText, fail: (message: string) => never): (event: AuditEvent) => string {
  const parts: (string | EventText)[] = []
  let rest = template
  while (rest.length > 0) {
    const open = rest.indexOf('{{')
    if (open === -1) {
      parts.push(rest)
      break
    }
    const close = rest.indexOf('}}', open)
    if (close === -1) fail('output: a "{{" without its "}}"')
    if (open > 0) parts.push(rest.slice(0, open))
    parts.push(compile(`output placeholder ${parts.filter((p) => typeof p !== 'string').length + 1}`, rest.slice(open + 2, close).trim()))
    rest = rest.slice(close + 2)
  }
  if (parts.filter((p) => typeof p !== 'string').length > MAX_PLACEHOLDERS) fail(`output: more than ${MAX_PLACEHOLDERS} placeholders`)
  return (event) => {
    let out = ''
    for (const p of parts) out += typeof p === 'string' ? p : (p(event) ?? '<none>')
    return out.length > MAX_MESSAGE_LENGTH ? `${out.slice(0, MAX_MESSAGE_LENGTH - 1)}…` : out
  }
}

