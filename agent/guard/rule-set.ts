// A set of compiled rules, loaded from directories and indexed by verb and
// resource, so that an event is only tested against the rules that can apply
// to it.
import { fileURLToPath } from 'node:url'
import { LRUCache } from 'lru-cache'
import type { Finding } from '../../proto/wire.ts'
import type { AuditEvent } from '../audit/event.ts'
import { loadDefinitions, readDefinitionDirectory } from './definition-files.ts'
import { DefinitionError, matchesEvent } from './event-filter.ts'
import { CelBudgetExceeded } from './cel.ts'
import { compileRule, type Rule } from './rule.ts'
import { deniedByAdmission } from './admission.ts'
import type { GroupSpec } from './finding-groups.ts'

export const BUILTIN_RULES_DIR = fileURLToPath(new URL('./builtin-rules/', import.meta.url))
/** Rules that look at several stages of one request fire once per request (auditID). */
const FIRED_REQUESTS = 10_000

export type RuleFinding = Omit<Finding, 'recordIndex'>

/** Every rule in the .yaml/.yml files of `dir`, and every error (see readDefinitionDirectory). */
export function readRuleDirectory(dir: string): { rules: Rule[]; errors: DefinitionError[] } {
  const { items, errors } = readDefinitionDirectory(dir, 'rule', compileRule)
  return { rules: items, errors }
}

/** The rules of the directories, later ones replacing earlier ones by id (see loadDefinitions). */
export function loadRuleSet(dirs: readonly string[]): RuleSet {
  return new RuleSet(loadDefinitions(dirs, 'rule', compileRule))
}

const OTHER = '\u0000other'

export class RuleSet {
  readonly rules: readonly Rule[]
  readonly #verbs: Set<string>
  readonly #resources: Set<string>
  /** Candidates per verb, then resource; names no rule mentions share one bucket, so the maps stay small. */
  readonly #index = new Map<string, Map<string, Rule[]>>()
  readonly #fired = new LRUCache<string, true>({ max: FIRED_REQUESTS })
  readonly #byId: Map<string, Rule>

  constructor(rules: readonly Rule[]) {
    this.rules = rules
    this.#byId = new Map(rules.map((r) => [r.id, r]))
    this.#verbs = new Set(rules.flatMap((r) => [...(r.match.verbs ?? [])]))
    this.#resources = new Set(rules.flatMap((r) => [...(r.match.resources ?? [])]))
  }

  /** How the findings of rule `id` group (undefined: no such rule). */
  groupOf(id: string): GroupSpec | undefined {
    return this.#byId.get(id)?.group
  }

  /** The rules whose verbs and resources admit this pair, in load order. */
  candidates(verb: string, resource: string): Rule[] {
    const v = this.#verbs.has(verb) ? verb : OTHER
    const r = this.#resources.has(resource) ? resource : OTHER
    let byResource = this.#index.get(v)
    if (!byResource) this.#index.set(v, (byResource = new Map()))
    let list = byResource.get(r)
    if (!list) {
      list = this.rules.filter((rule) => (!rule.match.verbs || rule.match.verbs.has(v)) && (!rule.match.resources || rule.match.resources.has(r)))
      byResource.set(r, list)
    }
    return list
  }

  /**
   * Tests the event against its candidate rules; each hit is appended to `out`.
   * A request the rule's own admission policy refused (`rules admission`, Deny)
   * is a finding of that rule too, marked blocked: the attempt is worth knowing,
   * though the rule's match (codes: [200, 201]) looks at what was served.
   */
  inspect(event: AuditEvent, out: RuleFinding[]): void {
    const denied = deniedByAdmission(event)
    for (const id of denied) {
      const rule = this.#byId.get(id)
      if (!rule || !rule.match.stages.has(event.stage)) continue
      const finding = findingOf(rule, event)
      finding.message = `${finding.message} (also blocked at admission)`
      finding.details.blockedAtAdmission = 'true'
      out.push(finding)
    }
    const candidates = this.candidates(event.verb, event.objectRef?.resource ?? '')
    for (let i = 0; i < candidates.length; i++) {
      const rule = candidates[i]!
      if (denied.has(rule.id) || !matchesEvent(rule.match, event)) continue
      let overBudget = false
      try {
        if (rule.condition && !rule.condition(event)) continue
      } catch (err) {
        if (!(err instanceof CelBudgetExceeded)) throw err
        // An event built to be too costly to judge is judged a match: evading a rule that way must not work.
        overBudget = true
      }
      if (rule.exceptions.length > 0 && rule.exceptions.some((e) => e(event))) continue
      if (rule.match.stages.size > 1) {
        const key = `${rule.id}\u0000${event.auditID}`
        if (this.#fired.has(key)) continue
        this.#fired.set(key, true)
      }
      const finding = findingOf(rule, event)
      if (overBudget) {
        finding.message = `${rule.title}: this event was too costly to evaluate (over the budget of list elements and map entries), so it counts as a match`
        finding.details.overBudget = 'true'
      }
      out.push(finding)
    }
  }
}

// A finding's details hold what it adds to its event (the rule's title and techniques, later its group):
// the event's own fields (user, verb, object, code...) are in the record it points to, and an alert
// takes them from the event. Repeated in every finding, they were most of the bytes of a finding and a
// fifth of the encoding of a batch, for half the events of a real apiserver log.
function findingOf(rule: Rule, event: AuditEvent): RuleFinding {
  const details: Record<string, string> = { title: rule.title }
  if (rule.mitre.length > 0) details.mitre = rule.mitre.join(',')
  return { source: 'rule', id: rule.id, severity: rule.severity, message: rule.message(event), auditId: event.auditID, details }
}
