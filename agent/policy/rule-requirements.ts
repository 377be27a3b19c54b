// Requirements derived from guardrail rule files (`policy check --rules DIR`).
// The guard's loader reads and checks the rules; this takes what the policy
// check needs from each: its id, its `match` block and whether its condition
// or output reads the request or response body.
import type { NameList } from '../guard/event-filter.ts'
import type { Rule } from '../guard/rule.ts'
import { readRuleDirectory } from '../guard/rule-set.ts'
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
  // object, podSpec and containers are read from the request body (or the response, when logged).
  const level: Level = /\bresponseObject\b/.test(text) ? 'RequestResponse' : /\b(requestObject|object|podSpec|containers)\b/.test(text) ? 'Request' : 'Metadata'
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

/** Every enabled rule in the .yaml/.yml files of `dir`, read and checked by the guard's own loader. */
export function loadRuleRequirements(dir: string): Requirement[] {
  const { rules, errors } = readRuleDirectory(dir)
  if (errors.length > 0) throw new PolicyError(`--rules ${dir}: the rules do not load (auditrail rules lint lists every error): ${errors.map((e) => e.message).join('; ')}`)
  return rules.filter((r) => r.enabled).map((r) => requirementFromRule(shapeOf(r)))
}

function shapeOf(rule: Rule): RuleShape {
  const m = rule.match
  const list = (set: ReadonlySet<string> | undefined) => (set ? [...set] : undefined)
  const names = (n: NameList | undefined) => n?.patterns
  const match: NonNullable<RuleShape['match']> = { stages: [...m.stages], subresources: m.subresources ? [...m.subresources] : ['*'] }
  for (const [key, value] of [['verbs', list(m.verbs)], ['resources', list(m.resources)], ['apiGroups', list(m.apiGroups)], ['namespaces', names(m.namespaces)], ['users', names(m.users)], ['groups', names(m.groups)]] as const) {
    if (value) match[key] = [...value]
  }
  return { id: rule.id, match, expressions: rule.expressions }
}
