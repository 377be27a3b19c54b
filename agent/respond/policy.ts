// Which findings a response answers, and whom it never acts against. Pure
// decisions on a finding and its event; the responder (responder.ts) carries
// them out.
//
// Never acted against, whatever the policies say:
//   - a request that was not served (refused, failed, or blocked at admission by the rule's own
//     policy): it left nothing behind to act on
//   - an event older than respond.maxEventAge: a replay of old backups must not delete today's pods
//   - objects in respond.excludeNamespaces (kube-system by default)
//   - the cluster's own machinery, unless respond.includeSystemIdentities: system:* users that are
//     not service accounts (nodes, which create the mirror pods of static pods; the controller
//     manager, the scheduler) and kube-system's service accounts (the controllers)
//   - respond.excludeUsers, and the responder's own identity (its patches must not answer themselves)
import { severityRank } from '../../proto/wire.ts'
import type { AuditEvent } from '../audit/event.ts'
import type { RuleFinding } from '../guard/rule-set.ts'
import type { RespondConfig, ResponseAction } from '../config.ts'

/** Why a finding got no response; a metric label, so a fixed set. */
const SKIP_REASONS = ['blocked_at_admission', 'not_served', 'too_old', 'excluded_namespace', 'system_identity', 'excluded_user', 'own_identity', 'not_applicable', 'duplicate'] as const
export type SkipReason = (typeof SKIP_REASONS)[number]

export class ResponsePolicies {
  readonly #config: RespondConfig
  readonly #byId = new Map<string, ResponseAction[]>()
  readonly #bySeverity: { rank: number; action: ResponseAction }[] = []
  readonly #namespaces: Set<string>

  constructor(config: RespondConfig) {
    this.#config = config
    for (const p of config.policies) {
      if ('rules' in p) for (const id of p.rules) this.#byId.set(id, [...(this.#byId.get(id) ?? []), p.action])
      else this.#bySeverity.push({ rank: severityRank(p.minSeverity), action: p.action })
    }
    this.#namespaces = new Set(config.excludeNamespaces)
  }

  /** The actions that answer a finding, each once, in the order configured. */
  actionsFor(finding: RuleFinding): ResponseAction[] {
    // A responder's own finding answers nothing: a response never causes another.
    if (finding.id.startsWith('responder.')) return []
    const rank = severityRank(finding.severity)
    const actions = new Set(this.#byId.get(finding.id))
    for (const s of this.#bySeverity) if (rank >= s.rank) actions.add(s.action)
    return [...actions]
  }

  /** Why the object of this finding's event must be left alone, or undefined when it may be acted on. */
  exclusion(finding: RuleFinding, event: AuditEvent, nowMs: number, self: string | undefined): SkipReason | undefined {
    if (finding.details.blockedAtAdmission === 'true') return 'blocked_at_admission'
    const code = event.responseStatus?.code
    if (event.stage !== 'ResponseComplete' || code === undefined || code >= 300) return 'not_served'
    const at = event.stageTimestamp ? Date.parse(event.stageTimestamp) : NaN
    if (!Number.isFinite(at) || nowMs - at > this.#config.maxEventAgeMs) return 'too_old'
    const namespace = event.objectRef?.namespace
    if (namespace && this.#namespaces.has(namespace)) return 'excluded_namespace'
    const user = event.user?.username ?? ''
    if (self !== undefined && user === self) return 'own_identity'
    if (!this.#config.includeSystemIdentities && isSystemIdentity(user)) return 'system_identity'
    if (this.#config.excludeUsers.some((u) => (u.endsWith('*') ? user.startsWith(u.slice(0, -1)) : user === u))) return 'excluded_user'
    return undefined
  }
}

/** The cluster's own machinery: system:* users other than service accounts, and kube-system's service accounts. */
export function isSystemIdentity(user: string): boolean {
  if (user.startsWith('system:serviceaccount:')) return user.startsWith('system:serviceaccount:kube-system:')
  return user.startsWith('system:')
}
