// What rules and detectors share: the cheap `match` block, the `exceptions`
// list, name lists with prefixes, and errors that say where a definition is wrong.
//
//   match:        all optional, each a list (any of): verbs, resources, subresources, apiGroups,
//                 namespaces, names, users, groups, userAgents, stages, codes
//   exceptions:   any one that holds suppresses: a CEL text, or
//                 { users, groups, namespaces, names, userAgents, verbs, resources: [...] } (all given lists must hold)
//
// Lists of names accept a trailing `*` as a prefix match ("system:serviceaccount:kube-system:*").
// `subresources` absent means "no subresource" (a rule on pods does not see pods/exec); "*" means any.
// `stages` absent means ResponseComplete.
import type { AuditEvent } from '../audit/event.ts'
import type { EventPredicate } from './cel.ts'

export const MAX_TEXT_LENGTH = 4096
export const MAX_LIST_LENGTH = 1000
const STAGES = ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic']
const MATCH_KEYS = ['verbs', 'resources', 'subresources', 'apiGroups', 'namespaces', 'names', 'users', 'groups', 'userAgents', 'stages', 'codes'] as const
const EXCEPTION_KEYS = ['users', 'groups', 'namespaces', 'names', 'userAgents', 'verbs', 'resources'] as const

/** An exception as written: a CEL text, or lists that must all hold (kept for tools that translate rules, e.g. to admission policies). */
export type ExceptionSpec = string | Partial<Record<(typeof EXCEPTION_KEYS)[number], string[]>>

export type EventTest = (event: AuditEvent) => boolean

/** A rule or detector that cannot be loaded: where it is (file, id, field, position) and what is wrong. */
export class DefinitionError extends Error {
  readonly file: string
  readonly id: string | undefined
  constructor(file: string, id: string | undefined, message: string, kind: 'rule' | 'detector' = 'rule') {
    super(`${file}${id ? `: ${kind} ${id}` : ''}: ${message}`)
    this.name = 'DefinitionError'
    this.file = file
    this.id = id
  }
}

/** Names with optional trailing-`*` prefixes. */
export class NameList {
  readonly patterns: readonly string[]
  readonly #exact: Set<string>
  readonly #prefixes: string[]
  constructor(patterns: readonly string[]) {
    this.patterns = patterns
    this.#exact = new Set(patterns.filter((p) => !p.endsWith('*')))
    this.#prefixes = patterns.filter((p) => p.endsWith('*')).map((p) => p.slice(0, -1))
  }
  /** Event fields come from hostile input: anything but a string is not in the list. */
  has(value: unknown): boolean {
    if (typeof value !== 'string') return false
    if (this.#exact.has(value)) return true
    for (const p of this.#prefixes) if (value.startsWith(p)) return true
    return false
  }
  hasAny(values: unknown): boolean {
    if (!Array.isArray(values)) return false
    for (const v of values) if (this.has(v)) return true
    return false
  }
}

export interface EventMatch {
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

export function compileMatch(raw: unknown, fail: (message: string) => never): EventMatch {
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

export function compileExceptions(raw: unknown, fail: (message: string) => never, compile: (field: string, source: string) => EventPredicate): EventTest[] {
  if (raw === undefined) return []
  if (!Array.isArray(raw) || raw.length > MAX_LIST_LENGTH) return fail(`exceptions: expected a list of CEL expressions or mappings of ${EXCEPTION_KEYS.join(', ')}`)
  return raw.map((item, i) => {
    const field = `exceptions[${i}]`
    if (typeof item === 'string') {
      const holds = compile(field, item)
      // An exception too costly to evaluate does not hold: the finding stands (fail closed).
      return (ev: AuditEvent) => {
        try {
          return holds(ev)
        } catch {
          return false
        }
      }
    }
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

export function stringList(v: unknown, field: string, fail: (message: string) => never): string[] | undefined {
  if (v === undefined) return undefined
  if (!Array.isArray(v) || v.length > MAX_LIST_LENGTH || !v.every((x) => typeof x === 'string' && x.length <= MAX_TEXT_LENGTH)) return fail(`${field}: expected a list of strings`)
  return v
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** "250ms", "60s", "5m", "1h" → milliseconds. */
export function duration(v: unknown, field: string, fail: (message: string) => never): number {
  const m = typeof v === 'string' ? /^(\d+)(ms|s|m|h)$/.exec(v) : null
  const ms = m ? Number(m[1]) * UNITS[m[2]!]! : NaN
  if (!Number.isSafeInteger(ms) || ms < 1 || ms > 7 * 24 * 3_600_000) return fail(`${field}: expected a duration such as 60s, 5m or 1h (at most 7 days), got ${preview(v)}`)
  return ms
}

export function preview(v: unknown): string {
  let s: string
  try {
    s = JSON.stringify(v) ?? String(v)
  } catch {
    s = typeof v // a BigInt or a cycle, from a caller: say what it is
  }
  return s.length > 60 ? `${s.slice(0, 60)}…` : s
}

/**
 * The match block: every cheap test before the CEL condition. The rule set's
 * index already narrows rules by verb and resource, but detectors call this
 * directly, so it tests them too.
 */
export function matchesEvent(m: EventMatch, ev: AuditEvent): boolean {
  if (!m.stages.has(ev.stage)) return false
  if (m.verbs && !m.verbs.has(ev.verb)) return false
  const ref = ev.objectRef
  if (m.resources && !m.resources.has(ref?.resource ?? '')) return false
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
