// A set of compiled rules, loaded from directories and indexed by verb and
// resource, so that an event is only tested against the rules that can apply
// to it.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LRUCache } from 'lru-cache'
import { parseAllDocuments } from 'yaml'
import type { Finding } from '../../proto/wire.ts'
import type { AuditEvent } from '../audit/event.ts'
import { compileRule, matchesEvent, RuleError, type Rule } from './rule.ts'

export const BUILTIN_RULES_DIR = fileURLToPath(new URL('./builtin-rules/', import.meta.url))
const MAX_RULE_FILES = 1000
const MAX_RULE_FILE_BYTES = 1024 * 1024
const MAX_RULES = 5000
const MAX_DETAIL_LENGTH = 256
/** Rules that look at several stages of one request fire once per request (auditID). */
const FIRED_REQUESTS = 10_000

export type RuleFinding = Omit<Finding, 'recordIndex'>

/**
 * Every rule in the .yaml/.yml files of `dir` (not recursive, file name order;
 * names starting with "." are skipped: a mounted ConfigMap keeps its real
 * files in "..data"). Every error is collected, so that a linter can report
 * them all; a loader refuses the whole directory when there is any.
 */
export function readRuleDirectory(dir: string): { rules: Rule[]; errors: RuleError[] } {
  const rules: Rule[] = []
  const errors: RuleError[] = []
  let names: string[]
  try {
    names = readdirSync(dir).filter((n) => /\.ya?ml$/.test(n) && !n.startsWith('.')).sort()
  } catch (err) {
    return { rules, errors: [new RuleError(dir, undefined, `cannot read the rules directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): check rules.dirs in the configuration and the volume mount`)] }
  }
  if (names.length > MAX_RULE_FILES) return { rules, errors: [new RuleError(dir, undefined, `more than ${MAX_RULE_FILES} rule files`)] }
  const seen = new Map<string, string>()
  for (const name of names) {
    const file = join(dir, name)
    try {
      const stat = statSync(file)
      if (!stat.isFile()) continue
      if (stat.size > MAX_RULE_FILE_BYTES) throw new RuleError(file, undefined, `larger than ${MAX_RULE_FILE_BYTES} bytes: split it into several files`)
      for (const raw of ruleDocuments(readFileSync(file, 'utf8'), file)) {
        try {
          const rule = compileRule(raw, file)
          const other = seen.get(rule.id)
          if (other) throw new RuleError(file, rule.id, `the id is already used in ${other}: rule ids must be unique within a directory`)
          seen.set(rule.id, file)
          rules.push(rule)
        } catch (err) {
          if (!(err instanceof RuleError)) throw err
          errors.push(err)
        }
      }
    } catch (err) {
      if (err instanceof RuleError) errors.push(err)
      else errors.push(new RuleError(file, undefined, `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`))
    }
  }
  return { rules, errors }
}

/** A file holds one rule per YAML document, or a list of rules per document. */
function ruleDocuments(text: string, file: string): unknown[] {
  const out: unknown[] = []
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) {
      const e = doc.errors[0]!
      throw new RuleError(file, undefined, `not valid YAML at line ${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}`)
    }
    const value: unknown = doc.toJS({ maxAliasCount: 100 })
    if (value === null || value === undefined) continue
    out.push(...(Array.isArray(value) ? value : [value]))
  }
  return out
}

/**
 * Loads the directories in order: a rule whose id an earlier directory already
 * defined replaces it (so a user can tune or, with `enabled: false`, turn off
 * a built-in rule). Throws an AggregateError of RuleErrors when any file is bad.
 */
export function loadRuleSet(dirs: readonly string[]): RuleSet {
  const byId = new Map<string, Rule>()
  const errors: RuleError[] = []
  for (const dir of dirs) {
    const loaded = readRuleDirectory(dir)
    errors.push(...loaded.errors)
    for (const rule of loaded.rules) {
      byId.delete(rule.id)
      byId.set(rule.id, rule)
    }
  }
  if (byId.size > MAX_RULES) errors.push(new RuleError(dirs.join(', '), undefined, `more than ${MAX_RULES} rules`))
  if (errors.length > 0) throw new AggregateError(errors, errors.map((e) => e.message).join('\n'))
  return new RuleSet([...byId.values()].filter((r) => r.enabled))
}

const OTHER = '\u0000other'

export class RuleSet {
  readonly rules: readonly Rule[]
  readonly #verbs: Set<string>
  readonly #resources: Set<string>
  /** Candidates per (verb, resource); names no rule mentions share one bucket, so the map stays small. */
  readonly #index = new Map<string, Rule[]>()
  readonly #fired = new LRUCache<string, true>({ max: FIRED_REQUESTS })

  constructor(rules: readonly Rule[]) {
    this.rules = rules
    this.#verbs = new Set(rules.flatMap((r) => [...(r.match.verbs ?? [])]))
    this.#resources = new Set(rules.flatMap((r) => [...(r.match.resources ?? [])]))
  }

  /** The rules whose verbs and resources admit this pair, in load order. */
  candidates(verb: string, resource: string): Rule[] {
    const v = this.#verbs.has(verb) ? verb : OTHER
    const r = this.#resources.has(resource) ? resource : OTHER
    const key = `${v}\u0000${r}`
    let list = this.#index.get(key)
    if (!list) {
      list = this.rules.filter((rule) => (!rule.match.verbs || rule.match.verbs.has(v)) && (!rule.match.resources || rule.match.resources.has(r)))
      this.#index.set(key, list)
    }
    return list
  }

  /** Tests the event against its candidate rules; each hit is appended to `out`. */
  inspect(event: AuditEvent, out: RuleFinding[]): void {
    const candidates = this.candidates(event.verb, event.objectRef?.resource ?? '')
    for (let i = 0; i < candidates.length; i++) {
      const rule = candidates[i]!
      if (!matchesEvent(rule.match, event)) continue
      if (rule.condition && !rule.condition(event)) continue
      if (rule.exceptions.length > 0 && rule.exceptions.some((e) => safely(e, event))) continue
      if (rule.match.stages.size > 1) {
        const key = `${rule.id}\u0000${event.auditID}`
        if (this.#fired.has(key)) continue
        this.#fired.set(key, true)
      }
      out.push(findingOf(rule, event))
    }
  }
}

function safely(test: (event: AuditEvent) => boolean, event: AuditEvent): boolean {
  try {
    return test(event)
  } catch {
    return false
  }
}

function findingOf(rule: Rule, event: AuditEvent): RuleFinding {
  const ref = event.objectRef
  const details: Record<string, string> = { title: rule.title }
  const put = (key: string, value: string | number | undefined) => {
    if (value === undefined || value === '') return
    const s = String(value)
    details[key] = s.length > MAX_DETAIL_LENGTH ? `${s.slice(0, MAX_DETAIL_LENGTH - 1)}…` : s
  }
  put('mitre', rule.mitre.join(','))
  put('user', event.user?.username)
  put('impersonatedUser', event.impersonatedUser?.username)
  put('sourceIP', event.sourceIPs?.[0])
  put('verb', event.verb)
  put('resource', ref?.resource && (ref.subresource ? `${ref.resource}/${ref.subresource}` : ref.resource))
  put('namespace', ref?.namespace)
  put('name', ref?.name)
  put('code', event.responseStatus?.code)
  put('stageTimestamp', event.stageTimestamp)
  return { source: 'rule', id: rule.id, severity: rule.severity, message: rule.message(event), auditId: event.auditID, details }
}
