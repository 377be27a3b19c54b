// Requirements derived from guardrail rule files (`policy check --rules DIR`).
// This reads only what the policy check needs from each rule: its id, its
// `match` block and whether its condition or output reads the request or
// response body. Compiling and validating rules is the guard engine's job;
// when agent/guard exposes its loader, `requirementFromRule` takes its rules
// and `loadRuleRequirements` becomes a call to that loader.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { PolicyError, STAGES, type Level, type Stage } from './audit-policy.ts'
import { ALL_VERBS, knownGroupOf, type Requirement, type ResourceRef } from './requirements.ts'

/** The parts of a guardrail rule (issue 3's rule language) that decide what it needs logged. */
export interface RuleShape {
  id: string
  match?: {
    verbs?: string[]
    resources?: string[]
    subresources?: string[]
    apiGroups?: string[]
    namespaces?: string[]
    users?: string[]
    groups?: string[]
    stages?: string[]
  }
  /** CEL texts: condition, exceptions, output template. Scanned for requestObject / responseObject. */
  expressions: string[]
}

export function requirementFromRule(rule: RuleShape): Requirement {
  const m = rule.match ?? {}
  const text = rule.expressions.join('\n')
  const level: Level = /\bresponseObject\b/.test(text) ? 'RequestResponse' : /\brequestObject\b/.test(text) ? 'Request' : 'Metadata'
  const stages = (m.stages && m.stages.length > 0 ? m.stages : ['ResponseComplete']).filter((s): s is Stage => STAGES.includes(s as Stage))
  const req: Requirement = {
    source: 'rule',
    id: rule.id,
    why: level === 'Metadata' ? 'its match block' : `its expressions read ${level === 'Request' ? 'requestObject' : 'responseObject'}`,
    verbs: m.verbs && m.verbs.length > 0 && !m.verbs.includes('*') ? m.verbs : ALL_VERBS,
    resources: resourcesOf(rule),
    level,
    stages,
  }
  if (m.namespaces && m.namespaces.length > 0) req.namespaces = m.namespaces
  if (m.users && m.users.length > 0) req.users = m.users
  if (m.groups && m.groups.length > 0) req.userGroups = m.groups
  return req
}

function resourcesOf(rule: RuleShape): ResourceRef[] {
  const m = rule.match ?? {}
  const resources = m.resources && m.resources.length > 0 && !m.resources.includes('*') ? m.resources : ['*']
  const subresources = m.subresources && m.subresources.length > 0 ? m.subresources : ['']
  const out: ResourceRef[] = []
  for (const resource of resources) {
    const groups = resource === '*' ? ['*'] : m.apiGroups && m.apiGroups.length > 0 && !m.apiGroups.includes('*') ? m.apiGroups : [knownGroupOf(resource)]
    for (const group of groups) {
      if (group === undefined) throw new PolicyError(`rule ${rule.id}: match.resources names ${JSON.stringify(resource)} without match.apiGroups: add its API group so the policy check knows which requests it means`)
      for (const subresource of subresources) out.push({ group, resource, subresource })
    }
  }
  return out
}

const MAX_RULE_FILES = 1000
const MAX_RULE_FILE_BYTES = 1024 * 1024

/** Every rule in the .yaml/.yml files of `dir` (not recursive), in file name order. */
export function loadRuleRequirements(dir: string): Requirement[] {
  let names: string[]
  try {
    names = readdirSync(dir).filter((n) => /\.ya?ml$/.test(n)).sort()
  } catch (err) {
    throw new PolicyError(`--rules ${dir}: cannot read the directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  if (names.length > MAX_RULE_FILES) throw new PolicyError(`--rules ${dir}: more than ${MAX_RULE_FILES} rule files`)
  const out: Requirement[] = []
  for (const name of names) {
    const file = join(dir, name)
    if (!statSync(file).isFile()) continue
    if (statSync(file).size > MAX_RULE_FILE_BYTES) throw new PolicyError(`${file}: larger than ${MAX_RULE_FILE_BYTES} bytes: not a rule file`)
    for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
      if (doc.errors.length > 0) throw new PolicyError(`${file}: not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`)
      const value: unknown = doc.toJS({ maxAliasCount: 100 })
      for (const raw of Array.isArray(value) ? value : value === null ? [] : [value]) out.push(requirementFromRule(readRuleShape(raw, file)))
    }
  }
  return out
}

function readRuleShape(raw: unknown, file: string): RuleShape {
  if (typeof raw !== 'object' || raw === null || typeof (raw as { id?: unknown }).id !== 'string') throw new PolicyError(`${file}: a rule without an id: every rule needs id, match and condition`)
  const r = raw as Record<string, unknown>
  const id = r.id as string
  const match = r.match === undefined ? {} : r.match
  if (typeof match !== 'object' || match === null || Array.isArray(match)) throw new PolicyError(`${file}: rule ${id}: match: expected a mapping`)
  const shape: NonNullable<RuleShape['match']> = {}
  for (const key of ['verbs', 'resources', 'subresources', 'apiGroups', 'namespaces', 'users', 'groups', 'stages'] as const) {
    const v = (match as Record<string, unknown>)[key]
    if (v === undefined) continue
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new PolicyError(`${file}: rule ${id}: match.${key}: expected a list of strings`)
    shape[key] = v
  }
  const expressions = [r.condition, r.output, ...(Array.isArray(r.exceptions) ? r.exceptions : [r.exceptions])].map((x) => (typeof x === 'string' ? x : x === undefined ? '' : JSON.stringify(x)))
  return { id, match: shape, expressions }
}
