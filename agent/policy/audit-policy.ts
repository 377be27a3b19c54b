// An apiserver audit policy (audit.k8s.io/v1 Policy), read strictly and
// evaluated as k8s.io/apiserver's policy checker does: rules in order, the
// first rule that matches decides the level, and a stage is dropped when the
// rule's or the policy's omitStages names it.
import { parseDocument } from 'yaml'

export type Level = 'None' | 'Metadata' | 'Request' | 'RequestResponse'
export const LEVELS: readonly Level[] = ['None', 'Metadata', 'Request', 'RequestResponse']
export type Stage = 'RequestReceived' | 'ResponseStarted' | 'ResponseComplete' | 'Panic'
export const STAGES: readonly Stage[] = ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic']

export interface GroupResources { group: string; resources: string[]; resourceNames: string[] }
export interface PolicyRule {
  /** Position in the policy's rules list, for messages ("rules[3]"). */
  index: number
  level: Level
  users: string[]
  userGroups: string[]
  verbs: string[]
  resources: GroupResources[]
  namespaces: string[]
  nonResourceURLs: string[]
  omitStages: Stage[]
}
export interface AuditPolicy { file: string; rules: PolicyRule[]; omitStages: Stage[] }

export class PolicyError extends Error {
  override name = 'PolicyError'
}

// The apiserver decodes the policy strictly: a misspelt field (`resource:`) would
// otherwise silently widen a rule to everything.
const POLICY_FIELDS = new Set(['apiVersion', 'kind', 'metadata', 'rules', 'omitStages', 'omitManagedFields'])
const RULE_FIELDS = new Set(['level', 'users', 'userGroups', 'verbs', 'resources', 'namespaces', 'nonResourceURLs', 'omitStages', 'omitManagedFields'])
const GROUP_RESOURCE_FIELDS = new Set(['group', 'resources', 'resourceNames'])
const MAX_POLICY_BYTES = 4 * 1024 * 1024
const MAX_RULES = 10_000

export function parseAuditPolicy(text: string, file: string): AuditPolicy {
  if (text.length > MAX_POLICY_BYTES) throw new PolicyError(`${file}: larger than ${MAX_POLICY_BYTES} bytes: not an audit policy`)
  const doc = parseDocument(text, { uniqueKeys: true })
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!
    throw new PolicyError(`${file}: not valid YAML at line ${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}`)
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 100 })
  if (!isMapping(raw) || raw.kind !== 'Policy' || raw.apiVersion !== 'audit.k8s.io/v1') {
    throw new PolicyError(`${file}: not an audit policy: expected apiVersion audit.k8s.io/v1 and kind Policy (v1beta1 and v1alpha1 were removed from the apiserver in 1.24)`)
  }
  checkFields(raw, POLICY_FIELDS, file, 'the policy')
  if (!Array.isArray(raw.rules) || raw.rules.length === 0) throw new PolicyError(`${file}: rules: expected a non-empty list (the apiserver logs nothing without rules)`)
  if (raw.rules.length > MAX_RULES) throw new PolicyError(`${file}: rules: more than ${MAX_RULES} rules`)
  const rules = raw.rules.map((r: unknown, index: number) => readRule(r, index, file))
  return { file, rules, omitStages: readStages(raw.omitStages, file, 'omitStages') }
}

function readRule(r: unknown, index: number, file: string): PolicyRule {
  const at = `rules[${index}]`
  if (!isMapping(r)) throw new PolicyError(`${file}: ${at}: expected a mapping with at least a level`)
  checkFields(r, RULE_FIELDS, file, at)
  if (!LEVELS.includes(r.level as Level)) throw new PolicyError(`${file}: ${at}.level: expected one of ${LEVELS.join(', ')}, got ${JSON.stringify(r.level)}`)
  if (r.resources !== undefined && r.resources !== null && !Array.isArray(r.resources)) throw new PolicyError(`${file}: ${at}.resources: expected a list of {group, resources, resourceNames}`)
  const resources = ((r.resources ?? []) as unknown[]).map((g, i): GroupResources => {
    const where = `${at}.resources[${i}]`
    if (!isMapping(g)) throw new PolicyError(`${file}: ${where}: expected a mapping {group, resources, resourceNames}`)
    checkFields(g, GROUP_RESOURCE_FIELDS, file, where)
    if (g.group !== undefined && typeof g.group !== 'string') throw new PolicyError(`${file}: ${where}.group: expected a string ("" is the core group)`)
    return { group: g.group ?? '', resources: readStrings(g.resources, file, `${where}.resources`), resourceNames: readStrings(g.resourceNames, file, `${where}.resourceNames`) }
  })
  const rule: PolicyRule = {
    index,
    level: r.level as Level,
    users: readStrings(r.users, file, `${at}.users`),
    userGroups: readStrings(r.userGroups, file, `${at}.userGroups`),
    verbs: readStrings(r.verbs, file, `${at}.verbs`),
    resources,
    namespaces: readStrings(r.namespaces, file, `${at}.namespaces`),
    nonResourceURLs: readStrings(r.nonResourceURLs, file, `${at}.nonResourceURLs`),
    omitStages: readStages(r.omitStages, file, `${at}.omitStages`),
  }
  // The apiserver's validation: a rule is about resources or about non-resource URLs, never both.
  if (rule.nonResourceURLs.length > 0 && (rule.resources.length > 0 || rule.namespaces.length > 0)) {
    throw new PolicyError(`${file}: ${at}: nonResourceURLs cannot be combined with resources or namespaces (the apiserver rejects it)`)
  }
  return rule
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function checkFields(obj: Record<string, unknown>, known: Set<string>, file: string, where: string): void {
  for (const key of Object.keys(obj)) {
    if (!known.has(key)) throw new PolicyError(`${file}: ${where}: unknown field ${JSON.stringify(key)} (known: ${[...known].join(', ')})`)
  }
}

function readStrings(v: unknown, file: string, field: string): string[] {
  if (v === undefined || v === null) return []
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new PolicyError(`${file}: ${field}: expected a list of strings`)
  return v
}

function readStages(v: unknown, file: string, field: string): Stage[] {
  const xs = readStrings(v, file, field)
  for (const s of xs) if (!STAGES.includes(s as Stage)) throw new PolicyError(`${file}: ${field}: unknown stage ${JSON.stringify(s)} (known: ${STAGES.join(', ')})`)
  return xs as Stage[]
}

// --- evaluation

/**
 * A class of resource requests, as a requirement describes them. Fields left
 * undefined stand for "any": any user, any namespace, any object name.
 */
export interface RequestClass {
  verb: string
  group: string
  resource: string
  subresource: string
  /** Cluster-scoped resources have no namespace: rules restricted to namespaces never match them. */
  clusterScoped: boolean
  users?: readonly string[]
  userGroups?: readonly string[]
  namespaces?: readonly string[]
}

/** How a rule relates to a class of requests: it matches none, some, or all of them. */
export type Coverage = 'none' | 'some' | 'all'

export function ruleCoverage(rule: PolicyRule, req: RequestClass): Coverage {
  // A rule with only nonResourceURLs matches non-resource requests (/healthz...) only.
  if (rule.nonResourceURLs.length > 0) return 'none'
  if (rule.verbs.length > 0 && !rule.verbs.includes(req.verb)) return 'none'
  if (rule.resources.length > 0 && !rule.resources.some((g) => groupResourceMatches(g, req))) return 'none'
  let coverage: Coverage = 'all'
  const narrow = (c: Coverage) => {
    if (c === 'none' || coverage === 'none') coverage = 'none'
    else if (c === 'some') coverage = 'some'
  }
  narrow(setCoverage(rule.users, req.users))
  // A request carries several groups: a rule naming groups covers a class of requests only if every
  // request in it is in one of them, which we know only when the class is defined by one of those groups.
  narrow(rule.userGroups.length === 0 ? 'all' : req.userGroups && req.userGroups.every((g) => rule.userGroups.includes(g)) ? 'all' : 'some')
  if (rule.namespaces.length > 0) narrow(req.clusterScoped ? (rule.namespaces.includes('') ? 'all' : 'none') : setCoverage(rule.namespaces, req.namespaces))
  // resourceNames restrict the rule to some objects: only some requests of the class.
  const byName = rule.resources.filter((g) => groupResourceMatches(g, req))
  if (byName.length > 0 && byName.every((g) => g.resourceNames.length > 0)) narrow('some')
  return coverage
}

/** A rule's list (users, namespaces) against the class's own list: empty means any. */
function setCoverage(ruleValues: readonly string[], classValues: readonly string[] | undefined): Coverage {
  if (ruleValues.length === 0) return 'all'
  if (!classValues) return 'some'
  if (classValues.every((v) => ruleValues.includes(v))) return 'all'
  return classValues.some((v) => ruleValues.includes(v)) ? 'some' : 'none'
}

/** The apiserver's ruleMatchesResource for one group entry: "*", "resource/sub", "*\/sub", "resource/*". */
function groupResourceMatches(g: GroupResources, req: RequestClass): boolean {
  if (g.group !== req.group) return false
  if (g.resources.length === 0) return true
  const combined = req.subresource ? `${req.resource}/${req.subresource}` : req.resource
  return g.resources.some((r) =>
    r === '*' ||
    r === combined ||
    (req.subresource !== '' && r === `*/${req.subresource}`) ||
    (r.endsWith('/*') && r.slice(0, -2) === req.resource))
}

export interface Decision {
  rule: PolicyRule
  coverage: 'some' | 'all'
}

/**
 * The rules that decide a class of requests, in order: every rule that
 * matches some of them, up to and including the first that matches all of
 * them. An empty result, or one that ends on a 'some', leaves requests that
 * no rule matches: the apiserver logs those at level None.
 */
export function decidingRules(policy: AuditPolicy, req: RequestClass): Decision[] {
  const out: Decision[] = []
  for (const rule of policy.rules) {
    const coverage = ruleCoverage(rule, req)
    if (coverage === 'none') continue
    out.push({ rule, coverage })
    if (coverage === 'all') break
  }
  return out
}

export function stageOmitted(policy: AuditPolicy, rule: PolicyRule, stage: Stage): boolean {
  return policy.omitStages.includes(stage) || rule.omitStages.includes(stage)
}

export function atLeast(level: Level, needed: Level): boolean {
  return LEVELS.indexOf(level) >= LEVELS.indexOf(needed)
}
