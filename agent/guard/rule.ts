// One guardrail rule: parsed from YAML into typed values, compiled once.
//
//   id: privileged-container            stable, kebab-case
//   title: A privileged container       one line
//   severity: high                      info | low | medium | high | critical
//   description: ...                    why it matters, what to do
//   mitre: [T1611]                      optional technique ids
//   match:                              cheap filters, all optional, each a list (any of):
//     verbs, resources, subresources, apiGroups, namespaces, names, users, groups, userAgents, stages, codes
//   condition: CEL over `event`         optional; a missing field makes it false
//   exceptions:                         optional; any one that holds suppresses the finding
//     - CEL text
//     - { users, groups, namespaces, names, userAgents, verbs, resources: [...] }   all given lists must hold
//   output: "text {{ CEL }} text"       the finding's message (default: who did which verb on which URI)
//   enabled: false                      optional; turns a rule (e.g. a built-in one of the same id) off
//
// Lists of names accept a trailing `*` as a prefix match ("system:serviceaccount:kube-system:*").
// `subresources` absent means "no subresource" (a rule on pods does not see pods/exec); "*" means any.
// `stages` absent means ResponseComplete.
import type { AuditEvent } from '../audit/event.ts'
import { CelCompileError, compileExpression, compilePredicate, evaluateToText, type EventExpression, type EventPredicate } from './cel.ts'
import { isSeverity, SEVERITIES, type Severity } from './severity.ts'

export const RULE_ID_PATTERN = /^[a-z0-9]+(-[a-z0-9]+)*$/
const MAX_ID_LENGTH = 100
const MAX_TEXT_LENGTH = 4096
const MAX_LIST_LENGTH = 1000
const MAX_MESSAGE_LENGTH = 1024
const MAX_PLACEHOLDERS = 32
const DEFAULT_OUTPUT = '{{ event.user.username }} did {{ event.verb }} {{ event.requestURI }} ({{ event.responseStatus.code }})'
const STAGES = ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic']
const RULE_KEYS = new Set(['id', 'title', 'severity', 'description', 'mitre', 'match', 'condition', 'exceptions', 'output', 'enabled'])
const MATCH_KEYS = ['verbs', 'resources', 'subresources', 'apiGroups', 'namespaces', 'names', 'users', 'groups', 'userAgents', 'stages', 'codes'] as const
const EXCEPTION_KEYS = ['users', 'groups', 'namespaces', 'names', 'userAgents', 'verbs', 'resources'] as const

/** A rule that cannot be loaded: where it is (file, rule id, field, position) and what is wrong. */
export class RuleError extends Error {
  readonly file: string
  readonly ruleId: string | undefined
  constructor(file: string, ruleId: string | undefined, message: string) {
    super(`${file}${ruleId ? `: rule ${ruleId}` : ''}: ${message}`)
    this.name = 'RuleError'
    this.file = file
    this.ruleId = ruleId
  }
}

/** Names with optional trailing-`*` prefixes. */
export class NameList {
  readonly #exact: Set<string>
  readonly #prefixes: string[]
  constructor(patterns: readonly string[]) {
    this.#exact = new Set(patterns.filter((p) => !p.endsWith('*')))
    this.#prefixes = patterns.filter((p) => p.endsWith('*')).map((p) => p.slice(0, -1))
  }
  has(value: string | undefined): boolean {
    if (value === undefined) return false
    if (this.#exact.has(value)) return true
    for (const p of this.#prefixes) if (value.startsWith(p)) return true
    return false
  }
  hasAny(values: readonly string[] | undefined): boolean {
    if (!values) return false
    for (const v of values) if (this.has(v)) return true
    return false
  }
}

export interface RuleMatch {
  /** undefined: any. The index dispatches on these two. */
  verbs: Set<string> | undefined
  resources: Set<string> | undefined
  /** undefined: any; the empty string stands for "no subresource". */
  subresources: Set<string> | undefined
  apiGroups: Set<string> | undefined
  namespaces: NameList | undefined
  names: NameList | undefined
  users: NameList | undefined
  groups: NameList | undefined
  userAgents: NameList | undefined
  stages: Set<string>
  codes: Set<number> | undefined
}

export interface Rule {
  id: string
  title: string
  severity: Severity
  description: string
  mitre: string[]
  enabled: boolean
  file: string
  match: RuleMatch
  /** The rule's CEL texts (condition, exceptions, output placeholders), for tools that ask what a rule reads. */
  expressions: string[]
  condition: EventPredicate | undefined
  exceptions: ((event: AuditEvent) => boolean)[]
  message: (event: AuditEvent) => string
}

/** Parses and compiles one rule document. Throws RuleError naming the file, the rule and the field. */
export function compileRule(raw: unknown, file: string): Rule {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new RuleError(file, undefined, 'a rule must be a mapping with id, title, severity, match, condition and output')
  const r = raw as Record<string, unknown>
  const id = r.id
  if (typeof id !== 'string' || !RULE_ID_PATTERN.test(id) || id.length > MAX_ID_LENGTH) throw new RuleError(file, undefined, `id: expected a kebab-case name (e.g. privileged-container), got ${preview(id)}`)
  const fail = (message: string): never => {
    throw new RuleError(file, id, message)
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
    exceptions: compileExceptions(r.exceptions, fail, (field, source) => compile(field, source, compilePredicate)),
    message: compileTemplate(r.output === undefined ? DEFAULT_OUTPUT : text('output', true), (field, source) => compile(field, source, compileExpression), fail),
  }
}

function compileMatch(raw: unknown, fail: (message: string) => never): RuleMatch {
  if (raw === undefined) raw = {}
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail('match: expected a mapping of lists')
  const m = raw as Record<string, unknown>
  for (const key of Object.keys(m)) if (!(MATCH_KEYS as readonly string[]).includes(key)) fail(`match: unknown field ${JSON.stringify(key)}; match has ${MATCH_KEYS.join(', ')}`)
  const list = (key: string) => {
    const v = stringList(m[key], `match.${key}`, fail)
    return v === undefined || v.includes('*') ? undefined : v
  }
  const set = (key: string) => {
    const v = list(key)
    return v && new Set(v)
  }
  const names = (key: string) => {
    const v = list(key)
    return v && new NameList(v)
  }
  const stages = stringList(m.stages, 'match.stages', fail) ?? ['ResponseComplete']
  for (const s of stages) if (!STAGES.includes(s)) fail(`match.stages: ${JSON.stringify(s)} is not a stage; use ${STAGES.join(', ')}`)
  let codes: Set<number> | undefined
  if (m.codes !== undefined) {
    if (!Array.isArray(m.codes) || m.codes.length > MAX_LIST_LENGTH || !m.codes.every((c) => Number.isInteger(c) && c >= 100 && c <= 599)) fail('match.codes: expected a list of HTTP status codes (100-599)')
    codes = new Set(m.codes as number[])
  }
  const subresources = m.subresources === undefined ? new Set(['']) : set('subresources')
  return {
    verbs: set('verbs'),
    resources: set('resources'),
    subresources,
    apiGroups: set('apiGroups'),
    namespaces: names('namespaces'),
    names: names('names'),
    users: names('users'),
    groups: names('groups'),
    userAgents: names('userAgents'),
    stages: new Set(stages),
    codes,
  }
}

function compileExceptions(raw: unknown, fail: (message: string) => never, compile: (field: string, source: string) => EventPredicate): Rule['exceptions'] {
  if (raw === undefined) return []
  if (!Array.isArray(raw) || raw.length > MAX_LIST_LENGTH) return fail(`exceptions: expected a list of CEL expressions or mappings of ${EXCEPTION_KEYS.join(', ')}`)
  return raw.map((item, i) => {
    const field = `exceptions[${i}]`
    if (typeof item === 'string') return compile(field, item)
    if (typeof item !== 'object' || item === null || Array.isArray(item)) return fail(`${field}: expected a CEL expression or a mapping`)
    const e = item as Record<string, unknown>
    for (const key of Object.keys(e)) if (!(EXCEPTION_KEYS as readonly string[]).includes(key)) fail(`${field}: unknown field ${JSON.stringify(key)}; an exception lists ${EXCEPTION_KEYS.join(', ')}`)
    const lists = EXCEPTION_KEYS.map((key) => [key, stringList(e[key], `${field}.${key}`, fail)] as const).filter(([, v]) => v !== undefined)
    if (lists.length === 0) return fail(`${field}: an exception needs at least one of ${EXCEPTION_KEYS.join(', ')}`)
    const tests = lists.map(([key, v]): ((event: AuditEvent) => boolean) => {
      const names = new NameList(v!)
      switch (key) {
        case 'users': return (ev) => names.has(ev.user?.username)
        case 'groups': return (ev) => names.hasAny(ev.user?.groups)
        case 'namespaces': return (ev) => names.has(ev.objectRef?.namespace)
        case 'names': return (ev) => names.has(ev.objectRef?.name)
        case 'userAgents': return (ev) => names.has(ev.userAgent)
        case 'verbs': return (ev) => names.has(ev.verb)
        case 'resources': return (ev) => names.has(ev.objectRef?.resource)
      }
    })
    return (ev: AuditEvent) => tests.every((t) => t(ev))
  })
}

/** `text {{ CEL }} text`: placeholders compiled at load, evaluated only for a finding. */
function compileTemplate(template: string, compile: (field: string, source: string) => EventExpression, fail: (message: string) => never): (event: AuditEvent) => string {
  const parts: (string | EventExpression)[] = []
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
    for (const p of parts) out += typeof p === 'string' ? p : (evaluateToText(p, event) ?? '<none>')
    return out.length > MAX_MESSAGE_LENGTH ? `${out.slice(0, MAX_MESSAGE_LENGTH - 1)}…` : out
  }
}

function stringList(v: unknown, field: string, fail: (message: string) => never): string[] | undefined {
  if (v === undefined) return undefined
  if (!Array.isArray(v) || v.length > MAX_LIST_LENGTH || !v.every((x) => typeof x === 'string' && x.length <= MAX_TEXT_LENGTH)) return fail(`${field}: expected a list of strings`)
  return v
}

function preview(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v)
  return s.length > 60 ? `${s.slice(0, 60)}…` : s
}

/** The match block: every cheap test before the CEL condition. */
export function matchesEvent(m: RuleMatch, ev: AuditEvent): boolean {
  if (!m.stages.has(ev.stage)) return false
  const ref = ev.objectRef
  if (m.subresources && !m.subresources.has(ref?.subresource ?? '')) return false
  if (m.apiGroups && !m.apiGroups.has(ref?.apiGroup ?? '')) return false
  if (m.namespaces && !m.namespaces.has(ref?.namespace)) return false
  if (m.names && !m.names.has(ref?.name)) return false
  if (m.users && !m.users.has(ev.user?.username)) return false
  if (m.groups && !m.groups.hasAny(ev.user?.groups)) return false
  if (m.userAgents && !m.userAgents.has(ev.userAgent)) return false
  if (m.codes && !m.codes.has(ev.responseStatus?.code ?? 0)) return false
  return true
}
