// The policy check itself: for each requirement, each verb, resource and
// stage it needs, which policy rules decide those requests and whether they
// log them at the level needed. A shortfall is a blind spot.
import { atLeast, decidingRules, stageOmitted, type AuditPolicy, type Level, type RequestClass, type Stage } from './audit-policy.ts'
import { isClusterScoped, PROBE_RESOURCES, type Requirement, type ResourceRef } from './requirements.ts'

export interface BlindSpot {
  source: Requirement['source']
  id: string
  why: string
  verbs: string[]
  /** group/resource/subresource as the apiserver names it ("pods/exec", "apps/deployments"). */
  resource: string
  needs: string
  gets: string
  /** Index of the policy rule that decided, or undefined when no rule matched. */
  policyRule: number | undefined
}

export function findBlindSpots(policy: AuditPolicy, requirements: readonly Requirement[]): BlindSpot[] {
  // Keyed by everything but the verb, so that one line names all verbs hidden the same way.
  const spots = new Map<string, BlindSpot>()
  for (const req of requirements) {
    for (const ref of expand(req.resources)) {
      for (const verb of req.verbs) {
        for (const stage of req.stages) {
          for (const shortfall of shortfalls(policy, req, ref, verb, stage)) {
            const resource = nameOf(ref)
            const key = `${req.source}\0${req.id}\0${resource}\0${shortfall.gets}\0${shortfall.policyRule}\0${stage}`
            const spot = spots.get(key)
            if (spot) {
              if (!spot.verbs.includes(verb)) spot.verbs.push(verb)
            } else {
              spots.set(key, { source: req.source, id: req.id, why: req.why, verbs: [verb], resource, needs: `${req.level} at ${stage}`, gets: shortfall.gets, policyRule: shortfall.policyRule })
            }
          }
        }
      }
    }
  }
  return [...spots.values()]
}

function shortfalls(policy: AuditPolicy, req: Requirement, ref: ResourceRef, verb: string, stage: Stage): Array<{ gets: string; policyRule: number | undefined }> {
  const cls: RequestClass = { verb, group: ref.group, resource: ref.resource, subresource: ref.subresource, clusterScoped: isClusterScoped(ref.resource) }
  if (req.users) cls.users = req.users
  if (req.userGroups) cls.userGroups = req.userGroups
  if (req.namespaces) cls.namespaces = req.namespaces
  const out: Array<{ gets: string; policyRule: number | undefined }> = []
  const decisions = decidingRules(policy, cls)
  for (const { rule, coverage } of decisions) {
    const some = coverage === 'some' ? ' for the users, groups, namespaces or object names it lists' : ''
    if (!atLeast(rule.level, req.level)) out.push({ gets: `level ${rule.level}${some}`, policyRule: rule.index })
    else if (stageOmitted(policy, rule, stage)) out.push({ gets: `${rule.level} without ${stage} (${policy.omitStages.includes(stage) ? 'the policy\'s omitStages' : 'the rule\'s omitStages'})${some}`, policyRule: rule.index })
  }
  if (decisions.at(-1)?.coverage !== 'all') out.push({ gets: decisions.length === 0 ? 'nothing: no rule matches, so level None' : 'level None for the requests no rule matches', policyRule: undefined })
  return out
}

function expand(resources: readonly ResourceRef[]): ResourceRef[] {
  return resources.flatMap((r) => (r.resource === '*' ? PROBE_RESOURCES.filter((p) => r.group === '*' || p.group === r.group) : [r]))
}

function nameOf(ref: ResourceRef): string {
  const resource = ref.subresource ? `${ref.resource}/${ref.subresource}` : ref.resource
  return ref.group ? `${ref.group}/${resource}` : resource
}

export function formatBlindSpot(s: BlindSpot): string {
  const where = s.policyRule === undefined ? '' : ` (rules[${s.policyRule}])`
  return `blind spot: ${s.source} ${s.id}: ${s.verbs.join(',')} ${s.resource} needs ${s.needs}; the policy gives ${s.gets}${where} — ${s.why}`
}

// --- the other direction: bodies that must never reach the apiserver's log file

interface Exposure { resource: ResourceRef; verbs: string[]; max: Level; why: string }
const EXPOSURES: readonly Exposure[] = [
  { resource: { group: '', resource: 'secrets', subresource: '' }, verbs: ['get', 'list', 'watch', 'create', 'update', 'patch'], max: 'Metadata', why: 'secret values would be written to the audit log on disk' },
  { resource: { group: '', resource: 'serviceaccounts', subresource: 'token' }, verbs: ['create'], max: 'Metadata', why: 'issued tokens would be written to the audit log on disk' },
  { resource: { group: 'authentication.k8s.io', resource: 'tokenreviews', subresource: '' }, verbs: ['create'], max: 'Metadata', why: 'the reviewed bearer tokens would be written to the audit log on disk' },
]

/** Warnings, not blind spots: the policy logs bodies that hold credentials. */
export function findExposures(policy: AuditPolicy): string[] {
  const out: string[] = []
  for (const e of EXPOSURES) {
    const levels = new Map<number, string[]>()
    for (const verb of e.verbs) {
      const cls: RequestClass = { verb, group: e.resource.group, resource: e.resource.resource, subresource: e.resource.subresource, clusterScoped: isClusterScoped(e.resource.resource) }
      for (const { rule } of decidingRules(policy, cls)) {
        if (!atLeast(e.max, rule.level)) levels.set(rule.index, [...(levels.get(rule.index) ?? []), verb])
      }
    }
    for (const [index, verbs] of levels) {
      out.push(`warning: ${verbs.join(',')} ${nameOf(e.resource)} is logged at ${policy.rules[index]!.level} (rules[${index}]): ${e.why}; use Metadata`)
    }
  }
  return out
}
