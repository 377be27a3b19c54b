// The guardrail stage of the pipeline: every decoded event is tested against
// the current rule set. The built-in pack and the user's directories are
// watched; a change is picked up without a restart, and a broken change
// keeps the rules that were running (and says why in the log and a metric).
// The known-bad address file is watched and reloaded the same way.
import { watch, type FSWatcher } from 'chokidar'
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import type { Logger } from 'pino'
import type { AuditEvent } from '../audit/event.ts'
import type { AgentMetrics } from '../observe/metrics.ts'
import { NetworkSet, parseAddressList, setClusterNetworks, setKnownBadAddresses } from './networks.ts'
import { BUILTIN_RULES_DIR, loadRuleSet, RuleSet, type RuleFinding } from './rule-set.ts'

/** A ConfigMap update is several file operations; reload once they settle. */
const RELOAD_DELAY_MS = 300

export interface GuardOptions {
  builtin: boolean
  dirs: readonly string[]
  logger: Logger
  metrics?: AgentMetrics
  /** The cluster's own networks, validated by the config (agent/config.ts). */
  clusterNetworks?: readonly string[]
  /** A file of known-bad addresses and CIDRs, one a line; '' or absent for none. */
  knownBadAddressesFile?: string
}

/** Whether a watched path is `dir` or an entry of it (the watch is depth 0). */
function within(path: string, dir: string): boolean {
  const absolute = resolve(path)
  return absolute === resolve(dir) || dirname(absolute) === resolve(dir)
}

export class Guard {
  readonly #dirs: string[]
  readonly #log: Logger
  readonly #metrics: AgentMetrics | undefined
  #rules: RuleSet
  #watcher: FSWatcher | undefined
  #reloadTimer: NodeJS.Timeout | undefined
  readonly #addressFile: string | undefined
  #addressTimer: NodeJS.Timeout | undefined

  /**
   * Loads the rules. A broken user directory at start-up does not stop the
   * agent (a bad ConfigMap must not blind the node): it runs the built-in
   * pack alone, logs why, and loads the user's rules once they are fixed.
   */
  constructor(options: GuardOptions) {
    this.#dirs = [...(options.builtin ? [BUILTIN_RULES_DIR] : []), ...options.dirs]
    this.#log = options.logger
    this.#metrics = options.metrics
    setClusterNetworks(new NetworkSet(options.clusterNetworks ?? []))
    this.#addressFile = options.knownBadAddressesFile ? resolve(options.knownBadAddressesFile) : undefined
    // Before the first good read nothing is known bad; a broken file at start-up does not stop the agent either.
    setKnownBadAddresses(new NetworkSet([]))
    this.reloadAddresses()
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

  /** Starts watching the rule directories and the address file for changes; resolves once the watch is in place. */
  async watch(): Promise<void> {
    const addressDir = this.#addressFile ? dirname(this.#addressFile) : undefined
    const paths = [...this.#dirs, ...(addressDir ? [addressDir] : [])]
    if (this.#watcher || paths.length === 0) return
    // depth 0: a mounted ConfigMap swaps its "..data" symlink; any entry changing is a reason to reload.
    // The address file's directory is watched, not the file: the swap replaces the file the watch was on.
    this.#watcher = watch(paths, { depth: 0, ignoreInitial: true })
    this.#watcher.on('all', (_event, path) => {
      if (addressDir && within(path, addressDir)) {
        clearTimeout(this.#addressTimer)
        this.#addressTimer = setTimeout(() => this.reloadAddresses(), RELOAD_DELAY_MS)
      }
      if (this.#dirs.some((dir) => within(path, dir))) {
        clearTimeout(this.#reloadTimer)
        this.#reloadTimer = setTimeout(() => this.reload(), RELOAD_DELAY_MS)
      }
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

  /** Reads the known-bad address file again; a file that cannot be read or parsed leaves the list in use and logs why. Returns whether the new list took over. */
  reloadAddresses(): boolean {
    if (!this.#addressFile) return false
    try {
      const addresses = parseAddressList(readFileSync(this.#addressFile, 'utf8'), this.#addressFile)
      setKnownBadAddresses(addresses)
      this.#log.info({ file: this.#addressFile, entries: addresses.size }, 'known-bad addresses loaded')
      return true
    } catch (err) {
      this.#log.error({ file: this.#addressFile, error: (err as Error).message }, 'known-bad addresses not loaded: fix the file; the list loaded before stays in use')
      return false
    }
  }

  async close(): Promise<void> {
    clearTimeout(this.#reloadTimer)
    clearTimeout(this.#addressTimer)
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
