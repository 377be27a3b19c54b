// The guardrail stage of the pipeline: every decoded event is tested against
// the current rule set. The built-in pack and the user's directories are
// watched; a change is picked up without a restart, and a broken change
// keeps the rules that were running (and says why in the log and a metric).
import { watch, type FSWatcher } from 'chokidar'
import type { Logger } from 'pino'
import type { AuditEvent } from '../audit/event.ts'
import type { AgentMetrics } from '../observe/metrics.ts'
import { BUILTIN_RULES_DIR, loadRuleSet, RuleSet, type RuleFinding } from './rule-set.ts'

/** A ConfigMap update is several file operations; reload once they settle. */
const RELOAD_DELAY_MS = 300

export interface GuardOptions {
  builtin: boolean
  dirs: readonly string[]
  logger: Logger
  metrics?: AgentMetrics
}

export class Guard {
  readonly #dirs: string[]
  readonly #log: Logger
  readonly #metrics: AgentMetrics | undefined
  #rules: RuleSet
  #watcher: FSWatcher | undefined
  #reloadTimer: NodeJS.Timeout | undefined

  /**
   * Loads the rules. A broken user directory at start-up does not stop the
   * agent (a bad ConfigMap must not blind the node): it runs the built-in
   * pack alone, logs why, and loads the user's rules once they are fixed.
   */
  constructor(options: GuardOptions) {
    this.#dirs = [...(options.builtin ? [BUILTIN_RULES_DIR] : []), ...options.dirs]
    this.#log = options.logger
    this.#metrics = options.metrics
    try {
      this.#rules = loadRuleSet(this.#dirs)
      this.#loaded('ok')
    } catch (err) {
      if (!(err instanceof AggregateError)) throw err
      this.#rules = options.builtin ? loadRuleSet([BUILTIN_RULES_DIR]) : new RuleSet([])
      this.#loaded('error', err)
    }
  }

  get rules(): RuleSet {
    return this.#rules
  }

  inspect(event: AuditEvent, out: RuleFinding[]): void {
    this.#rules.inspect(event, out)
  }

  /** Starts watching the rule directories for changes; resolves once the watch is in place. */
  async watch(): Promise<void> {
    if (this.#watcher || this.#dirs.length === 0) return
    // depth 0: a mounted ConfigMap swaps its "..data" symlink; any entry changing is a reason to reload.
    this.#watcher = watch(this.#dirs, { depth: 0, ignoreInitial: true })
    this.#watcher.on('all', () => {
      clearTimeout(this.#reloadTimer)
      this.#reloadTimer = setTimeout(() => this.reload(), RELOAD_DELAY_MS)
    })
    this.#watcher.on('error', (err) => this.#log.warn({ err }, 'watching the rule directories failed; rules are reloaded on the next change seen'))
    const watcher = this.#watcher
    await new Promise<void>((resolve) => watcher.once('ready', resolve))
  }

  /** Loads the directories again; on any error the running rules stay. Returns whether the new rules took over. */
  reload(): boolean {
    try {
      this.#rules = loadRuleSet(this.#dirs)
      this.#loaded('ok')
      return true
    } catch (err) {
      if (!(err instanceof AggregateError)) throw err
      this.#loaded('error', err)
      return false
    }
  }

  async close(): Promise<void> {
    clearTimeout(this.#reloadTimer)
    await this.#watcher?.close()
    this.#watcher = undefined
  }

  #loaded(result: 'ok' | 'error', err?: AggregateError): void {
    this.#metrics?.ruleLoads.inc({ result })
    this.#metrics?.rulesLoaded.set(this.#rules.rules.length)
    if (result === 'ok') this.#log.info({ rules: this.#rules.rules.length, dirs: this.#dirs }, 'guardrail rules loaded')
    else this.#log.error({ errors: err!.errors.map((e: Error) => e.message), running: this.#rules.rules.length }, 'guardrail rules not loaded: fix the errors listed; the rules loaded before keep running')
  }
}
