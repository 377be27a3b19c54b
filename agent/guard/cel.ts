// CEL over audit events, shared by guardrail rules and anomaly detectors.
//
// The library is @bufbuild/cel: it passes the cel-spec conformance suite and
// its `matches()` runs on a linear-time RE2, so neither a rule nor event data
// can trigger catastrophic backtracking (@marcbachmann/cel-js evaluates
// simple expressions faster but took 186 s on `'a'*40+'!'`.matches('^(a+)+$');
// figures in the commit that chose it). Expressions are parsed and planned
// once, at load; a function the environment does not know and a constant
// regular expression that does not compile are load errors, not silent
// evaluation errors on every event.
import { celEnv, celFunc, CelScalar, isCelError, parse, plan, type CelResult } from '@bufbuild/cel'
import { strings } from '@bufbuild/cel/ext'
import { RE2JS } from '@bufbuild/re2'
import { LRUCache } from 'lru-cache'
import { execCommandOf, type AuditEvent } from '../audit/event.ts'
import { CelBudgetExceeded, celView, chargedList, rootView, withBudget } from './cel-view.ts'
import { hasClusterNetworks, hasKnownBadAddresses, knownBadAddress, outsideClusterNetworks } from './networks.ts'

export { CelBudgetExceeded }

/** Long enough for any real rule, short enough that a hostile rule file cannot make the parser work hard. */
export const MAX_EXPRESSION_LENGTH = 4096

/**
 * Besides the strings extension, two questions about an address (networks.ts; each
 * costs a bounded number of set lookups, whatever the size of the lists):
 *   outsideClusterNetworks(ip)  true for an address in none of guard.clusterNetworks (loopback is
 *                               always inside); false when none are configured, so rules on it stay quiet
 *   knownBadAddress(ip)         true for an address in guard.knownBadAddressesFile
 */
const env = celEnv({
  funcs: [
    ...strings,
    celFunc('outsideClusterNetworks', [CelScalar.STRING], CelScalar.BOOL, outsideClusterNetworks),
    celFunc('knownBadAddress', [CelScalar.STRING], CelScalar.BOOL, knownBadAddress),
  ],
  re2: { compile: compiledPattern },
})

// @bufbuild/cel compiles the pattern of matches() at every call: 100-370 µs per evaluation of the exec
// rules, whose patterns are constants. Compiled once each here; bounded, as a pattern can come from event data.
const compiledPatterns = new LRUCache<string, RE2JS>({ max: 512 })

function compiledPattern(pattern: string): RE2JS {
  let re = compiledPatterns.get(pattern)
  if (re === undefined) compiledPatterns.set(pattern, (re = RE2JS.compile(pattern)))
  return re
}

/** Operators and macros the planner handles itself (they are not in the function resolver). */
const BUILT_IN_CALLS = new Set(['_&&_', '_||_', '_?_:_', '_[_]', '@not_strictly_false', 'has'])

/** An expression that cannot be compiled, with its place in the expression text. */
export class CelCompileError extends Error {
  readonly line: number
  readonly column: number
  constructor(message: string, line: number, column: number) {
    super(message)
    this.name = 'CelCompileError'
    this.line = line
    this.column = column
  }
}

export type EventPredicate = (event: AuditEvent) => boolean
export type EventExpression = (event: AuditEvent) => CelResult

/**
 * The variables an expression may read. `event` is the audit event as
 * parsed. The others are derived from it, and computed only for the
 * expressions that name them:
 *   object      the object the request leaves behind: the response body when the
 *               policy logs it (what was stored, after mutating admission),
 *               else the request body (for a patch, only the patch)
 *   name        the object's name: objectRef's, else the object's, else its
 *               generateName followed by "*" (a create names nothing yet)
 *   target      what the request was about, for messages: "secrets prod/db",
 *               "pods/exec default/web-1", "secrets in prod", "namespaces foo"
 *   podSpec     the pod spec inside `object`: a Pod's spec, the template of a
 *               Deployment, DaemonSet, StatefulSet, ReplicaSet, Job or
 *               ReplicationController, a CronJob's job template
 *   containers  podSpec's containers, initContainers and ephemeralContainers in one list
 *   execCommand what a pods/exec request runs: its URI's `command` parameters,
 *               URL-decoded, in order (bounded: event.ts); absent for other requests
 *   owner       `object`'s controlling owner (its ownerReference with controller: true) as
 *               Kind/name, "ReplicaSet/api-7d9f8c6b5": what a controller made the object for;
 *               absent when it has none
 */
export const VARIABLES = ['event', 'object', 'name', 'target', 'podSpec', 'containers', 'execCommand', 'owner'] as const
const DERIVED = VARIABLES.slice(1)

/** Compiles an expression over the variable `event`. Throws CelCompileError. */
export function compileExpression(text: string): EventExpression {
  return compileParsed(text, parseExpression(text))
}

type Parsed = ReturnType<typeof parse>

// The built-in rules and detectors hold 249 expressions (conditions, group keys, message placeholders such
// as `event.user.username`, written 52 times), 60 of them different: each text is parsed once, not 249 times
// at every start. Bounded, for agents whose rules are reloaded with new texts for months. A tree is only read.
const parsedTexts = new LRUCache<string, Parsed>({ max: 4096 })

/** Parses an expression; throws CelCompileError with the place of the problem. */
function parseExpression(text: string): Parsed {
  if (text.length > MAX_EXPRESSION_LENGTH) throw new CelCompileError(`the expression is ${text.length} characters long; the limit is ${MAX_EXPRESSION_LENGTH}: split it into several rules`, 1, 1)
  let parsed = parsedTexts.get(text)
  if (parsed === undefined) parsedTexts.set(text, (parsed = parseText(text)))
  return parsed
}

function parseText(text: string): Parsed {
  try {
    return parse(text)
  } catch (err) {
    // The parser's message starts with "<input>:LINE:COLUMN: ".
    const m = /^<input>:(\d+):(\d+): (.*)/s.exec((err as Error).message)
    if (m) throw new CelCompileError(m[3]!.split('\n')[0]!, Number(m[1]), Number(m[2]))
    throw new CelCompileError((err as Error).message, 1, 1)
  }
}

function compileParsed(text: string, parsed: Parsed): EventExpression {
  const failAt = (id: bigint, message: string): never => {
    const offset = Number(parsed.sourceInfo?.positions[String(id)] ?? 0)
    const before = text.slice(0, offset)
    throw new CelCompileError(message, before.split('\n').length, offset - before.lastIndexOf('\n'))
  }
  checkCalls(parsed.expr, failAt)
  const names = new Set<string>()
  const bound = new Set<string>(VARIABLES)
  walk(parsed.expr, (e) => {
    if (e.exprKind.case === 'comprehensionExpr') bound.add(e.exprKind.value.iterVar).add(e.exprKind.value.accuVar)
  })
  walk(parsed.expr, (e) => {
    if (e.exprKind.case !== 'identExpr') return
    if (!bound.has(e.exprKind.value.name)) failAt(e.id, `unknown variable ${e.exprKind.value.name}: an expression reads ${VARIABLES.join(', ')}`)
    names.add(e.exprKind.value.name)
  })
  const program = plan(env, parsed)
  const bind = DERIVED.some((n) => names.has(n)) ? derivedBindings : (event: AuditEvent) => ({ event: rootView(event) })
  return (event) => {
    // A missing field is an error value, and most events miss most fields a rule
    // asks about: without a stack trace each error is cheap (it was 14% of the time).
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    try {
      return withBudget(() => program(bind(event) as never))
    } finally {
      Error.stackTraceLimit = limit
    }
  }
}

// Several rules look at the same event in a row: derive its bindings once.
let lastEvent: AuditEvent | undefined
let lastBindings: EventBindings | undefined

function derivedBindings(event: AuditEvent): EventBindings {
  if (event === lastEvent) return lastBindings!
  lastEvent = event
  lastBindings = new EventBindings(event)
  return lastBindings
}

const NOT_YET = Symbol('not derived yet')

/**
 * The variables an expression reads, each derived when first read (the CEL
 * activation asks for a name, a getter answers). The object a rule judges is
 * the response body when it is one, and the response body is parsed only when
 * read (audit/event.ts): a rule that needs the name, and finds it in objectRef,
 * does not parse it. An unset variable is undefined, as the activation expects.
 */
class EventBindings {
  readonly event: unknown
  readonly #event: AuditEvent
  #object: Record<string, unknown> | undefined | typeof NOT_YET = NOT_YET
  #name: string | undefined | typeof NOT_YET = NOT_YET
  #podSpec: Record<string, unknown> | undefined | typeof NOT_YET = NOT_YET
  #execCommand: unknown = NOT_YET
  #containers: unknown = NOT_YET

  constructor(event: AuditEvent) {
    this.#event = event
    // First, so that the views of the object's parts below belong to this event (cel-view.ts).
    this.event = rootView(event)
  }

  #judged(): Record<string, unknown> | undefined {
    if (this.#object === NOT_YET) {
      const response = this.#event.responseObject
      const object = isRecord(response) && response.kind !== 'Status' && isRecord(response.metadata) ? response : this.#event.requestObject
      this.#object = isRecord(object) ? object : undefined
    }
    return this.#object
  }

  #metadata(): Record<string, unknown> {
    const object = this.#judged()
    return object && isRecord(object.metadata) ? object.metadata : {}
  }

  get name(): string | undefined {
    if (this.#name === NOT_YET) {
      let name: unknown = this.#event.objectRef?.name
      if (name === undefined) {
        const metadata = this.#metadata()
        name = metadata.name ?? (typeof metadata.generateName === 'string' ? `${metadata.generateName}*` : undefined)
      }
      this.#name = typeof name === 'string' ? name : undefined
    }
    return this.#name
  }

  get target(): string {
    return targetOf(this.#event, this.name)
  }

  get execCommand(): unknown {
    if (this.#execCommand === NOT_YET) {
      const command = execCommandOf(this.#event)
      this.#execCommand = command ? chargedList(command) : undefined
    }
    return this.#execCommand
  }

  get object(): unknown {
    const object = this.#judged()
    return object ? celView(object) : undefined
  }

  get owner(): string | undefined {
    const refs = this.#judged() ? this.#metadata().ownerReferences : undefined
    const owner = Array.isArray(refs) ? refs.find((o) => isRecord(o) && o.controller === true) : undefined
    return isRecord(owner) && typeof owner.kind === 'string' && typeof owner.name === 'string' ? `${owner.kind}/${owner.name}` : undefined
  }

  #spec(): Record<string, unknown> | undefined {
    if (this.#podSpec === NOT_YET) {
      const object = this.#judged()
      this.#podSpec = object ? podSpecOf(object) : undefined
    }
    return this.#podSpec
  }

  get podSpec(): unknown {
    const spec = this.#spec()
    return spec ? celView(spec) : undefined
  }

  get containers(): unknown {
    if (this.#containers === NOT_YET) {
      const spec = this.#spec()
      this.#containers = spec ? chargedList(POD_CONTAINER_LISTS.map((list) => spec[list]).flatMap((list) => (Array.isArray(list) ? list.filter(isRecord).map(celView) : []))) : undefined
    }
    return this.#containers
  }
}

function targetOf(event: AuditEvent, name: string | undefined): string {
  const ref = event.objectRef
  if (!ref?.resource) return String(event.requestURI ?? '')
  const what = ref.subresource ? `${ref.resource}/${ref.subresource}` : ref.resource
  // A namespace's objectRef names it twice (namespace and name).
  const namespace = ref.resource === 'namespaces' ? undefined : ref.namespace
  if (name) return `${what} ${namespace ? `${namespace}/` : ''}${name}`
  return namespace ? `${what} in ${namespace}` : what
}

const POD_CONTAINER_LISTS = ['containers', 'initContainers', 'ephemeralContainers'] as const

/**
 * The one pod-spec reader for every rule: a CronJob's job template, the
 * template of a Deployment, DaemonSet, StatefulSet, ReplicaSet, Job or
 * ReplicationController, a Pod's own spec. Read by shape first, so a body
 * without `kind` (a patch logged at Request level) is judged like a full one.
 */
function podSpecOf(object: Record<string, unknown>): Record<string, unknown> | undefined {
  const spec = object.spec
  if (!isRecord(spec)) return undefined
  const template = dig(spec, 'jobTemplate', 'spec', 'template', 'spec') ?? dig(spec, 'template', 'spec')
  if (template) return template
  // Other kinds have a spec too (a Service's, an Ingress's): only a Pod's is a pod spec, or a kindless one that
  // lists containers (kubectl debug's patch of pods/ephemeralcontainers is {"spec":{"ephemeralContainers":[...]}}).
  const kindlessPod = object.kind === undefined && POD_CONTAINER_LISTS.some((list) => Array.isArray(spec[list]))
  return object.kind === 'Pod' || kindlessPod ? spec : undefined
}

function dig(value: unknown, ...path: string[]): Record<string, unknown> | undefined {
  for (const key of path) {
    if (!isRecord(value)) return undefined
    value = value[key]
  }
  return isRecord(value) ? value : undefined
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * Compiles a condition: true only when the expression yields exactly `true`.
 * An evaluation error (most often a field the event does not have) is false,
 * so a condition that reads a missing field never fires. The one exception
 * is CelBudgetExceeded, which the caller decides about (rules fail closed).
 */
export function compilePredicate(text: string): EventPredicate {
  const parsed = parseExpression(text)
  const expression = compileParsed(text, parsed)
  const predicate: EventPredicate = (event) => {
    try {
      return expression(event) === true
    } catch (err) {
      if (err instanceof CelBudgetExceeded) throw err
      return false
    }
  }
  const lists = listsRequired(parsed.expr)
  if (lists.length === 0) return predicate
  return (event) => lists.every((loaded) => loaded()) && predicate(event)
}

/** The address functions, each with the question whether its list is loaded (networks.ts: none, false for every address). */
const ADDRESS_LISTS: Record<string, () => boolean> = { knownBadAddress: hasKnownBadAddresses, outsideClusterNetworks: hasClusterNetworks }

/**
 * The address lists without which a condition cannot be true: those of its conjuncts that are a
 * call of an address function, or `list.exists(x, f(x))` of one. Without the list the condition is
 * not evaluated at all: `known-bad-source-address` took a fifth of the rules' time on a real
 * apiserver log, for every other event, to say false, with no list configured.
 */
function listsRequired(expr: Expr | undefined): (() => boolean)[] {
  const kind = expr?.exprKind
  if (kind?.case === 'callExpr') {
    if (kind.value.function === '_&&_') return kind.value.args.flatMap(listsRequired)
    const loaded = ADDRESS_LISTS[kind.value.function]
    return loaded && !kind.value.target ? [loaded] : []
  }
  // The exists macro: @result = false; for each element, @result = @result || f(element).
  if (kind?.case === 'comprehensionExpr') {
    const { accuInit, loopStep, accuVar, result } = kind.value
    const init = accuInit?.exprKind
    const step = loopStep?.exprKind
    if (init?.case !== 'constExpr' || init.value.constantKind.case !== 'boolValue' || init.value.constantKind.value !== false) return []
    if (result?.exprKind.case !== 'identExpr' || result.exprKind.value.name !== accuVar) return []
    if (step?.case !== 'callExpr' || step.value.function !== '_||_' || step.value.args.length !== 2) return []
    const [accu, predicate] = step.value.args
    return accu?.exprKind.case === 'identExpr' && accu.exprKind.value.name === accuVar ? listsRequired(predicate) : []
  }
  return []
}

export type EventText = (event: AuditEvent) => string | undefined

/**
 * Compiles an expression for text (messages, group keys): a string, number or
 * boolean as text; errors, null, lists and maps undefined. Throws CelCompileError.
 * Most placeholders are a field of the event (`event.user.username`); those are
 * read straight from the parsed JSON, with CEL's answer (a missing field, or a
 * list or scalar on the way, is no value), at a tenth of an evaluation's cost.
 */
export function compileText(text: string): EventText {
  const parsed = parseExpression(text)
  const expression = compileParsed(text, parsed)
  const path = eventFieldPath(parsed.expr)
  if (!path) return (event) => evaluateToText(expression, event)
  return (event) => {
    let value: unknown = event
    for (const field of path) {
      if (!isRecord(value) || !Object.hasOwn(value, field)) return undefined
      value = value[field]
    }
    return typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined
  }
}

/** ["user", "username"] for `event.user.username`; undefined for anything but selections from `event`. */
function eventFieldPath(expr: Expr | undefined): string[] | undefined {
  const path: string[] = []
  while (expr?.exprKind.case === 'selectExpr' && !expr.exprKind.value.testOnly) {
    path.unshift(expr.exprKind.value.field)
    expr = expr.exprKind.value.operand
  }
  return expr?.exprKind.case === 'identExpr' && expr.exprKind.value.name === 'event' && path.length > 0 ? path : undefined
}

/** Evaluates to a string for messages; errors and missing values become undefined. */
export function evaluateToText(expression: EventExpression, event: AuditEvent): string | undefined {
  let value: CelResult
  try {
    value = expression(event)
  } catch {
    return undefined
  }
  if (isCelError(value) || value === null || value === undefined) return undefined
  if (typeof value === 'string') return value
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value)
  return undefined
}

type Expr = ReturnType<typeof parse>['expr']

/** Calls `visit` on every node of the expression tree. */
function walk(expr: Expr | undefined, visit: (e: Expr) => void): void {
  if (!expr) return
  visit(expr)
  const kind = expr.exprKind
  switch (kind.case) {
    case 'callExpr':
      walk(kind.value.target, visit)
      for (const arg of kind.value.args) walk(arg, visit)
      return
    case 'selectExpr':
      return walk(kind.value.operand, visit)
    case 'listExpr':
      for (const e of kind.value.elements) walk(e, visit)
      return
    case 'structExpr':
      for (const entry of kind.value.entries) {
        if (entry.keyKind.case === 'mapKey') walk(entry.keyKind.value, visit)
        walk(entry.value, visit)
      }
      return
    case 'comprehensionExpr':
      for (const e of [kind.value.iterRange, kind.value.accuInit, kind.value.loopCondition, kind.value.loopStep, kind.value.result]) walk(e, visit)
      return
    default:
      return
  }
}

/** Unknown functions and constant regular expressions that do not compile are load errors. */
function checkCalls(expr: Expr, fail: (id: bigint, message: string) => never): void {
  walk(expr, (e) => {
    if (e.exprKind.case !== 'callExpr') return
    const call = e.exprKind.value
    if (!BUILT_IN_CALLS.has(call.function) && env.funcs.find(call.function) === undefined) fail(e.id, `unknown function ${call.function}()`)
    if (call.function !== 'matches') return
    const pattern = call.args[call.target ? 0 : 1]
    if (pattern?.exprKind.case === 'constExpr' && pattern.exprKind.value.constantKind.case === 'stringValue') {
      const probe = plan(env, parse(`''.matches(${JSON.stringify(pattern.exprKind.value.constantKind.value)})`))()
      if (isCelError(probe)) fail(pattern.id, `invalid regular expression: ${probe.message}`)
    }
  })
}
