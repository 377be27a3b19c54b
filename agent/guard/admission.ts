// `auditrail rules admission`: the guardrail rules that judge the object of a
// request, translated into ValidatingAdmissionPolicies (admissionregistration.k8s.io/v1),
// so the API server can warn about or refuse what the agent would only report.
//
// The translation works on the rule's own texts, not on a hand-kept copy:
//   match       verbs -> operations, resources/subresources/apiGroups -> matchConstraints;
//               namespaces, names, users, groups -> matchConditions
//   condition   rewritten token by token: event.requestObject and object -> object,
//               event.user.* -> request.userInfo.*, event.objectRef.* -> request.*,
//               podSpec, containers, name, owner -> the policy's variables (same derivation as cel.ts)
//   exceptions  each one -> a matchCondition "not this exception"
// A rule that cannot be judged before the request is served (no object, a response
// code, a user agent, a field of the event the API server has not decided yet) is
// returned with the reason, never dropped.
//
// failurePolicy is Ignore: in the agent a condition that errs (a missing field) is
// false, and Ignore makes the API server do the same with an erring expression.
// One difference stays: the agent's `event.user` is the authenticated user, the
// policy's request.userInfo the impersonated one when there is impersonation.
import { parse } from '@bufbuild/cel'
import { VARIABLES } from './cel.ts'
import type { AuditEvent } from '../audit/event.ts'
import type { ExceptionSpec, NameList } from './event-filter.ts'
import type { Rule } from './rule.ts'

export const ADMISSION_ACTIONS = ['warn', 'audit', 'deny'] as const
export type AdmissionAction = (typeof ADMISSION_ACTIONS)[number]

/** Deny and Warn together would say the same twice (the API server refuses the pair); Audit goes with both. */
const VALIDATION_ACTIONS: Record<AdmissionAction, string[]> = { warn: ['Warn', 'Audit'], audit: ['Audit'], deny: ['Deny', 'Audit'] }
const OPERATIONS: Record<string, string> = { create: 'CREATE', update: 'UPDATE', patch: 'UPDATE', delete: 'DELETE' }
/** Verbs whose request carries the object being admitted. */
const OBJECT_VERBS = new Set(['create', 'update', 'patch'])
/** The derived variables of cel.ts as VAP variables, in dependency order; `object` is the VAP's own. */
const POLICY_VARIABLES: Record<string, string> = {
  podSpec: 'object.kind == "Pod" ? object.spec : object.kind == "CronJob" ? object.spec.jobTemplate.spec.template.spec : object.spec.template.spec',
  containers: '(has(variables.podSpec.containers) ? variables.podSpec.containers : []) + (has(variables.podSpec.initContainers) ? variables.podSpec.initContainers : []) + (has(variables.podSpec.ephemeralContainers) ? variables.podSpec.ephemeralContainers : [])',
  name: 'has(object.metadata.name) && object.metadata.name != "" ? object.metadata.name : has(object.metadata.generateName) ? object.metadata.generateName + "*" : request.name',
  // "Kind/name" of the controlling ownerReference, "" without one (cel.ts leaves it unset, which rules test with != "").
  owner: 'has(object.metadata.ownerReferences) && object.metadata.ownerReferences.exists(o, has(o.controller) && o.controller) ? object.metadata.ownerReferences.filter(o, has(o.controller) && o.controller).map(o, o.kind + "/" + o.name)[0] : ""',
}
/** Audit event fields known at admission, longest first. */
const EVENT_FIELDS: [string, string][] = [
  ['event.requestObject', 'object'],
  // What was stored is the object after mutating admission: the object validating admission sees.
  ['event.responseObject', 'object'],
  ['event.user.username', 'request.userInfo.username'],
  ['event.user.groups', 'request.userInfo.groups'],
  ['event.user.uid', 'request.userInfo.uid'],
  ['event.objectRef.namespace', 'request.namespace'],
  ['event.objectRef.name', 'request.name'],
  ['event.objectRef.resource', 'request.resource.resource'],
  ['event.objectRef.subresource', 'request.subResource'],
  ['event.objectRef.apiGroup', 'request.resource.group'],
  ['event.objectRef.apiVersion', 'request.resource.version'],
]
const EXCEPTION_FIELDS: Record<string, string> = { users: 'request.userInfo.username', namespaces: 'request.namespace', names: 'request.name', resources: 'request.resource.resource' }

type Manifest = { apiVersion: string; kind: string; metadata: { name: string; labels: Record<string, string>; annotations?: Record<string, string> }; spec: Record<string, unknown> }

export interface AdmissionPolicy {
  rule: Rule
  policy: Manifest
  binding: Manifest
}

export interface AdmissionSkip {
  rule: Rule
  reason: string
}

/** A rule that cannot become a policy, and why. */
class NotAdmissible extends Error {}

/** Every rule either becomes a policy and its binding or is returned with the reason it cannot. */
export function admissionPolicies(rules: readonly Rule[], action: AdmissionAction): { policies: AdmissionPolicy[]; skipped: AdmissionSkip[] } {
  const policies: AdmissionPolicy[] = []
  const skipped: AdmissionSkip[] = []
  for (const rule of rules) {
    try {
      policies.push(policyOf(rule, action))
    } catch (err) {
      if (!(err instanceof NotAdmissible)) throw err
      skipped.push({ rule, reason: err.message })
    }
  }
  return { policies, skipped }
}

function policyOf(rule: Rule, action: AdmissionAction): AdmissionPolicy {
  const m = rule.match
  if (rule.conditionText === undefined) throw new NotAdmissible('no condition: it records every matching request (activity), it does not judge an object')
  const verbs = m.verbs ? [...m.verbs] : []
  const others = verbs.filter((v) => !OBJECT_VERBS.has(v))
  if (verbs.length === 0 || others.length > 0) throw new NotAdmissible(`match.verbs: ${verbs.length === 0 ? 'any verb' : others.join(', ')} carries no object to admit (only create, update and patch do)`)
  if (!m.resources) throw new NotAdmissible('match.resources: any resource; a policy names the resources it judges')
  if (m.codes && [...m.codes].some((c) => c >= 400)) throw new NotAdmissible('match.codes: it fires on refused requests, which admission never sees')
  if (m.userAgents) throw new NotAdmissible('match.userAgents: the user agent is not part of an admission request')
  const condition = translate(rule.conditionText, 'condition')
  if (!condition.readsObject) throw new NotAdmissible('condition: it reads only the request, not the object being admitted')

  const matchConditions: { name: string; expression: string }[] = []
  const names = (field: string, list: NameList | undefined, expr: string) => {
    if (list) matchConditions.push({ name: `match-${field}`, expression: nameTest(expr, list.patterns) })
  }
  names('namespaces', m.namespaces, 'request.namespace')
  names('names', m.names, 'request.name')
  names('users', m.users, 'request.userInfo.username')
  if (m.groups) matchConditions.push({ name: 'match-groups', expression: groupTest(m.groups.patterns) })
  const variables = new Set(condition.variables)
  rule.exceptionSpecs.forEach((spec, i) => {
    const holds = exceptionTest(spec, `exceptions[${i}]`)
    for (const v of holds.variables) variables.add(v)
    matchConditions.push({ name: `not-exception-${i}`, expression: `!(${holds.expression})` })
  })

  const subresources = m.subresources ? [...m.subresources] : ['', '*']
  const resources = [...m.resources].flatMap((r) => subresources.map((s) => (s === '' ? r : `${r}/${s}`)))
  const operations = [...new Set(verbs.map((v) => OPERATIONS[v]!))]
  const name = policyName(rule.id)
  const message = `auditrail rule ${rule.id} (${rule.severity}): ${rule.title}`
  const labels = { 'app.kubernetes.io/part-of': 'auditrail', 'auditrail.io/rule': rule.id }
  if (variables.has('containers')) variables.add('podSpec')
  const policy: Manifest = {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingAdmissionPolicy',
    metadata: { name, labels, annotations: { 'auditrail.io/source': `${rule.file.split('/').slice(-1)[0]}: ${rule.id}` } },
    spec: {
      failurePolicy: 'Ignore',
      matchConstraints: { resourceRules: [{ apiGroups: m.apiGroups ? [...m.apiGroups] : ['*'], apiVersions: ['*'], operations, resources }] },
      ...(matchConditions.length > 0 ? { matchConditions } : {}),
      ...(variables.size > 0 ? { variables: Object.keys(POLICY_VARIABLES).filter((v) => variables.has(v)).map((v) => ({ name: v, expression: POLICY_VARIABLES[v]! })) } : {}),
      validations: [{ expression: `!(${condition.expression})`, message }],
      // "auditrail-<id>/rule: <id> fired|passed" on every request the policy judged: the audit log leads back to the rule
      // either way. (A value of null for "passed" does not type-check: the API server wants string or null, not dyn.)
      auditAnnotations: [{ key: 'rule', valueExpression: `(${condition.expression}) ? ${JSON.stringify(`${rule.id} fired`)} : ${JSON.stringify(`${rule.id} passed`)}` }],
    },
  }
  const binding: Manifest = {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingAdmissionPolicyBinding',
    metadata: { name, labels },
    spec: { policyName: name, validationActions: VALIDATION_ACTIONS[action] },
  }
  return { rule, policy, binding }
}

const POLICY_PREFIX = 'auditrail-'

/** The name of a rule's policy and binding: how an audit event's denial leads back to the rule. */
export function policyName(ruleId: string): string {
  return `${POLICY_PREFIX}${ruleId}`
}

const VALIDATION_FAILURE = 'validation.policy.admission.k8s.io/validation_failure'
const NONE: ReadonlySet<string> = new Set()
const DENIED_MESSAGE = /ValidatingAdmissionPolicy '([^']+)' with binding '[^']*' denied request/g

/**
 * The ids of the rules whose exported policies refused this request: from the
 * audit annotation the API server writes when a binding has Audit (each failure
 * with its policy and actions), else from the refusal message in responseStatus
 * (a Deny binding without Audit). A request that was not refused has none.
 */
export function deniedByAdmission(event: AuditEvent): ReadonlySet<string> {
  const code = event.responseStatus?.code
  // Every event passes here: a served request costs one comparison, no allocation.
  if (code === undefined || code < 400) return NONE
  const ids = new Set<string>()
  const take = (policy: unknown) => {
    if (typeof policy === 'string' && policy.startsWith(POLICY_PREFIX)) ids.add(policy.slice(POLICY_PREFIX.length))
  }
  const failures = event.annotations?.[VALIDATION_FAILURE]
  if (typeof failures === 'string') {
    try {
      const list: unknown = JSON.parse(failures)
      if (Array.isArray(list)) for (const f of list) if (Array.isArray(f?.validationActions) && f.validationActions.includes('Deny')) take(f.policy)
    } catch {
      // Not the API server's JSON: the message below may still say it.
    }
  }
  const message = event.responseStatus?.message
  if (typeof message === 'string') for (const m of message.matchAll(DENIED_MESSAGE)) take(m[1])
  return ids
}

/** A policy variable's expression with the variables it reads written out (POLICY_VARIABLES: our own text). */
function inlined(variable: string): string {
  return `(${POLICY_VARIABLES[variable]!.replace(/\bvariables\.(\w+)/g, (_, v: string) => inlined(v))})`
}

function nameTest(expr: string, patterns: readonly string[]): string {
  // An empty list admits no name, in the agent as here.
  if (patterns.length === 0) return 'false'
  return patterns.map((p) => (p.endsWith('*') ? `${expr}.startsWith(${JSON.stringify(p.slice(0, -1))})` : `${expr} == ${JSON.stringify(p)}`)).join(' || ')
}

function groupTest(patterns: readonly string[]): string {
  return `has(request.userInfo.groups) && request.userInfo.groups.exists(g, ${nameTest('g', patterns)})`
}

function exceptionTest(spec: ExceptionSpec, field: string): { expression: string; variables: string[] } {
  // An exception becomes a matchCondition, which the API server evaluates before the policy's variables
  // exist: the derived variables are written out in place.
  if (typeof spec === 'string') return { expression: translate(spec, field, { inline: true }).expression, variables: [] }
  const tests = Object.entries(spec).map(([key, list]) => {
    if (key === 'groups') return `(${groupTest(list!)})`
    if (key === 'verbs') {
      const unknown = list!.filter((v) => !(v in OPERATIONS))
      if (unknown.length > 0) throw new NotAdmissible(`${field}.verbs: ${unknown.join(', ')} has no admission operation`)
      return `(${nameTest('request.operation', [...new Set(list!.map((v) => OPERATIONS[v]!))])})`
    }
    const expr = EXCEPTION_FIELDS[key]
    if (!expr) throw new NotAdmissible(`${field}.${key}: not part of an admission request`)
    return `(${nameTest(expr, list!)})`
  })
  return { expression: tests.join(' && '), variables: [] }
}

/**
 * Rewrites a rule's CEL text into the policy's: the root names (an identifier not
 * after a ".") are mapped, everything else - literals, operators, fields, macros - is
 * kept as written. The parse tree says which names are comprehension variables.
 */
function translate(text: string, field: string, options: { inline?: boolean } = {}): { expression: string; variables: string[]; readsObject: boolean } {
  const bound = comprehensionVariables(text)
  const shadowing = [...bound].filter((v) => (VARIABLES as readonly string[]).includes(v) || v === 'request' || v === 'variables')
  if (shadowing.length > 0) throw new NotAdmissible(`${field}: the comprehension variable ${shadowing[0]} hides a name the policy needs`)
  const tokens = tokenize(text)
  const variables = new Set<string>()
  let readsObject = false
  let out = ''
  for (let i = 0; i < tokens.length; i++) {
    const tok = tokens[i]!
    const previous = tokens.slice(0, i).findLast((t) => t.kind !== 'space')
    if (tok.kind !== 'ident' || previous?.text === '.' || bound.has(tok.text)) {
      out += tok.text
      continue
    }
    switch (tok.text) {
      case 'object':
        readsObject = true
        out += 'object'
        continue
      case 'podSpec':
      case 'containers':
      case 'name':
      case 'owner':
        if (tok.text !== 'name') readsObject = true
        variables.add(tok.text)
        out += options.inline ? inlined(tok.text) : `variables.${tok.text}`
        continue
      case 'target':
        throw new NotAdmissible(`${field}: reads target, a text for messages that admission has no equivalent of`)
      case 'event': {
        // event.a.b.c: the path as written (fields only), mapped by its longest known prefix.
        const path = ['event']
        let j = i + 1
        for (;;) {
          const dot = nextSolid(tokens, j)
          const ident = dot === undefined ? undefined : nextSolid(tokens, dot + 1)
          if (dot === undefined || ident === undefined || tokens[dot]!.text !== '.' || tokens[ident]!.kind !== 'ident' || tokens[ident + 1]?.text === '(') break
          path.push(tokens[ident]!.text)
          j = ident + 1
        }
        const written = path.join('.')
        const known = EVENT_FIELDS.find(([from]) => written === from || written.startsWith(`${from}.`))
        if (!known) throw new NotAdmissible(`${field}: reads ${written}, which an admission request does not have (it is decided after admission, or not about the object)`)
        if (known[1] === 'object') readsObject = true
        out += known[1] + written.slice(known[0].length)
        i = j - 1
        continue
      }
      default:
        out += tok.text
    }
  }
  return { expression: out, variables: [...variables], readsObject }
}

function nextSolid(tokens: Token[], from: number): number | undefined {
  for (let i = from; i < tokens.length; i++) if (tokens[i]!.kind !== 'space') return i
  return undefined
}

function comprehensionVariables(text: string): Set<string> {
  const names = new Set<string>()
  const visit = (e: unknown): void => {
    if (typeof e !== 'object' || e === null) return
    if (Array.isArray(e)) return e.forEach(visit)
    const node = e as { exprKind?: { case?: string; value?: { iterVar?: string } } }
    if (node.exprKind?.case === 'comprehensionExpr' && node.exprKind.value?.iterVar) names.add(node.exprKind.value.iterVar)
    for (const v of Object.values(e)) if (typeof v === 'object') visit(v)
  }
  visit(parse(text).expr)
  return names
}

type Token = { kind: 'ident' | 'string' | 'space' | 'other'; text: string }

/** CEL's lexical structure, as far as the rewrite needs it: strings (with prefixes, triple quotes, escapes) are kept whole. */
function tokenize(text: string): Token[] {
  const tokens: Token[] = []
  // No comments: the rules' parser (@bufbuild/cel) does not accept them.
  const pattern = /(\s+)|((?:[rRbB]{1,2})?(?:"""[\s\S]*?"""|'''[\s\S]*?'''|"(?:\\[\s\S]|[^"\\\n])*"|'(?:\\[\s\S]|[^'\\\n])*'))|([A-Za-z_][A-Za-z0-9_]*)|([\s\S])/y
  let m: RegExpExecArray | null
  while ((m = pattern.exec(text)) !== null) {
    tokens.push({ kind: m[1] !== undefined ? 'space' : m[2] !== undefined ? 'string' : m[3] !== undefined ? 'ident' : 'other', text: m[0] })
    if (pattern.lastIndex >= text.length) break
  }
  return tokens
}
