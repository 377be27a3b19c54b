// `auditrail policy check POLICY.yaml`: does the apiserver's audit policy let
// through the events Auditrail needs, at the level it needs? The policy is
// evaluated as the apiserver does (rules in order, first match wins; omitStages
// of the rule and of the policy). Every requirement it fails is a blind spot.
import { readFileSync } from 'node:fs'
import { parseDocument } from 'yaml'

export type Level = 'None' | 'Metadata' | 'Request' | 'RequestResponse'
const LEVELS: readonly Level[] = ['None', 'Metadata', 'Request', 'RequestResponse']
type Stage = 'RequestReceived' | 'ResponseStarted' | 'ResponseComplete' | 'Panic'
const STAGES: readonly Stage[] = ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic']

interface GroupResources { group: string; resources: string[]; resourceNames: string[] }
interface PolicyRule {
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
export interface AuditPolicy { rules: PolicyRule[]; omitStages: Stage[] }

/** What Auditrail needs to see: a verb on a resource, at a level, in a stage. */
export interface Requirement {
  id: string
  why: string
  verbs: string[]
  resources: Array<{ group: string; resource: string }>
  level: Level
  stage: Stage
}

/** The events the built-in guardrails and detectors read (issues 3 and 4). */
export const BUILTIN_REQUIREMENTS: readonly Requirement[] = [
  { id: 'rbac-change', why: 'RBAC rules read the role or binding in the request', verbs: ['create', 'update', 'patch', 'delete'], resources: ['roles', 'rolebindings', 'clusterroles', 'clusterrolebindings'].map((r) => ({ group: 'rbac.authorization.k8s.io', resource: r })), level: 'RequestResponse', stage: 'ResponseComplete' },
  { id: 'privileged-pod', why: 'workload rules read the pod spec in the request', verbs: ['create', 'update', 'patch'], resources: [{ group: '', resource: 'pods' }, { group: 'apps', resource: 'deployments' }, { group: 'apps', resource: 'daemonsets' }, { group: 'apps', resource: 'statefulsets' }], level: 'Request', stage: 'ResponseComplete' },
  { id: 'exec-into-pod', why: 'exec, attach and port-forward sessions', verbs: ['create', 'get'], resources: ['pods/exec', 'pods/attach', 'pods/portforward'].map((r) => ({ group: '', resource: r })), level: 'Metadata', stage: 'ResponseComplete' },
  { id: 'secret-access', why: 'secret reads (metadata only: values must not be logged)', verbs: ['get', 'list', 'watch'], resources: [{ group: '', resource: 'secrets' }], level: 'Metadata', stage: 'ResponseComplete' },
  { id: 'network-policy-change', why: 'network policy edits', verbs: ['create', 'update', 'patch', 'delete'], resources: [{ group: 'networking.k8s.io', resource: 'networkpolicies' }], level: 'Request', stage: 'ResponseComplete' },
  { id: 'pod-create-delete', why: 'pod creation and deletion', verbs: ['create', 'delete'], resources: [{ group: '', resource: 'pods' }], level: 'Metadata', stage: 'ResponseComplete' },
  { id: 'forbidden-burst', why: 'the detector of forbidden bursts counts 403s on secrets reads', verbs: ['get', 'list'], resources: [{ group: '', resource: 'secrets' }], level: 'Metadata', stage: 'ResponseComplete' },
  { id: 'dropped-event', why: 'the dropped-event detector pairs RequestReceived with ResponseComplete for mutating requests', verbs: ['create', 'update', 'patch', 'delete'], resources: [{ group: '', resource: 'pods' }, { group: 'rbac.authorization.k8s.io', resource: 'clusterrolebindings' }], level: 'Metadata', stage: 'RequestReceived' },
]

export class PolicyError extends Error {
  override name = 'PolicyError'
}

export function parseAuditPolicy(text: string, file: string): AuditPolicy {
  const doc = parseDocument(text)
  if (doc.errors.length > 0) throw new PolicyError(`${file}: not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`)
  const raw = doc.toJS() as Record<string, unknown> | null
  if (!raw || raw.kind !== 'Policy' || typeof raw.apiVersion !== 'string' || !raw.apiVersion.startsWith('audit.k8s.io/')) {
    throw new PolicyError(`${file}: not an audit policy (expected apiVersion audit.k8s.io/v1, kind Policy)`)
  }
  const list = (v: unknown, field: string): string[] => {
    if (v === undefined || v === null) return []
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new PolicyError(`${file}: ${field}: expected a list of strings`)
    return v
  }
  const stages = (v: unknown, field: string): Stage[] => {
    const xs = list(v, field)
    for (const s of xs) if (!STAGES.includes(s as Stage)) throw new PolicyError(`${file}: ${field}: unknown stage ${JSON.stringify(s)}`)
    return xs as Stage[]
  }
  if (!Array.isArray(raw.rules)) throw new PolicyError(`${file}: rules: expected a list`)
  const rules = raw.rules.map((r: Record<string, unknown>, index: number): PolicyRule => {
    const at = `rules[${index}]`
    if (!LEVELS.includes(r.level as Level)) throw new PolicyError(`${file}: ${at}.level: expected one of ${LEVELS.join(', ')}`)
    const resources = ((r.resources ?? []) as Array<Record<string, unknown>>).map((g, i) => ({
      group: typeof g.group === 'string' ? g.group : '',
      resources: list(g.resources, `${at}.resources[${i}].resources`),
      resourceNames: list(g.resourceNames, `${at}.resources[${i}].resourceNames`),
    }))
    return {
      index,
      level: r.level as Level,
      users: list(r.users, `${at}.users`),
      userGroups: list(r.userGroups, `${at}.userGroups`),
      verbs: list(r.verbs, `${at}.verbs`),
      resources,
      namespaces: list(r.namespaces, `${at}.namespaces`),
      nonResourceURLs: list(r.nonResourceURLs, `${at}.nonResourceURLs`),
      omitStages: stages(r.omitStages, `${at}.omitStages`),
    }
  })
  return { rules, omitStages: stages(raw.omitStages, 'omitStages') }
}

/** Does the rule apply to this verb on this resource (for some requester)? */
function matches(rule: PolicyRule, verb: string, group: string, resource: string): boolean {
  if (rule.nonResourceURLs.length > 0 && rule.resources.length === 0) return false
  if (rule.verbs.length > 0 && !rule.verbs.includes(verb)) return false
  if (rule.resources.length === 0) return true
  const [base, sub] = resource.split('/')
  return rule.resources.some((g) => g.group === group && (g.resources.length === 0 || g.resources.some((r) => r === '*' || r === resource || r === `${base}/*` || (sub !== undefined && r === `*/${sub}`))))
}

/** Restricted to some users, groups, namespaces or names: it decides only for part of the traffic. */
function partial(rule: PolicyRule): boolean {
  return rule.users.length > 0 || rule.userGroups.length > 0 || rule.namespaces.length > 0 || rule.resources.some((g) => g.resourceNames.length > 0)
}

export interface BlindSpot { requirement: string; why: string; verb: string; resource: string; needs: string; gets: string }

export function checkPolicy(policy: AuditPolicy, requirements: readonly Requirement[] = BUILTIN_REQUIREMENTS): BlindSpot[] {
  const spots: BlindSpot[] = []
  for (const req of requirements) {
    for (const { group, resource } of req.resources) {
      for (const verb of req.verbs) {
        const name = group ? `${group}/${resource}` : resource
        // Walk the rules in order: a partial rule that gives less is a blind spot for the requests it covers.
        for (const rule of policy.rules) {
          if (!matches(rule, verb, group, resource)) continue
          const omitted = policy.omitStages.includes(req.stage) || rule.omitStages.includes(req.stage)
          const enough = LEVELS.indexOf(rule.level) >= LEVELS.indexOf(req.level) && !omitted
          if (!enough) {
            const gets = omitted ? `stage ${req.stage} omitted` : `level ${rule.level}`
            spots.push({ requirement: req.id, why: req.why, verb, resource: name, needs: `${req.level} at ${req.stage}`, gets: `${gets} (rules[${rule.index}]${partial(rule) ? ', for the users, namespaces or names it names' : ''})` })
          }
          if (!partial(rule)) break
        }
        if (!policy.rules.some((r) => matches(r, verb, group, resource) && !partial(r))) {
          spots.push({ requirement: req.id, why: req.why, verb, resource: name, needs: `${req.level} at ${req.stage}`, gets: 'no rule matches: level None' })
        }
      }
    }
  }
  return spots
}

/** `auditrail policy check POLICY.yaml`: exit 1 when there is a blind spot, 0 when there is none. */
export async function policyCommand(argv: string[]): Promise<number> {
  const [sub, file, ...rest] = argv
  if (sub !== 'check' || !file || rest.length > 0) throw new PolicyError('usage: auditrail policy check POLICY.yaml')
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new PolicyError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  const spots = checkPolicy(parseAuditPolicy(text, file))
  for (const s of spots) process.stdout.write(`blind spot  ${s.requirement}: ${s.verb} ${s.resource} needs ${s.needs}, the policy gives ${s.gets} — ${s.why}\n`)
  process.stdout.write(spots.length === 0 ? `ok: ${file} lets through every event the built-in rules and detectors need\n` : `${spots.length} blind spot(s) in ${file}\n`)
  return spots.length === 0 ? 0 : 1
}
