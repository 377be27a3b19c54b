// The agent's configuration: one YAML file (a ConfigMap), a few environment
// variables for what differs per node, and command-line flags on top. Parsed
// once into typed values; an unknown key, a wrong type or an impossible value
// fails with the key's name and what to write instead.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseDocument } from 'yaml'
import { MAX_CLUSTER_NETWORKS, NetworkSet, NetworkSyntaxError } from './guard/networks.ts'
import type { Http2Mode, RequestCompression } from './ship/sender.ts'
import type { StartAt } from './tail/tailer.ts'

export interface AgentConfig {
  node: string
  streamId: string
  stateDir: string
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace'
  tail: {
    path: string
    startAt: StartAt
    maxLineBytes: number
    maxOpenFiles: number
    pollIntervalMs: number
    appendCheckIntervalMs: number
  }
  quarantine: { dir: string; maxBytes: number }
  batch: { maxEvents: number; maxBytes: number; maxWaitMs: number; heartbeatIntervalMs: number }
  collector: {
    /** The collectors, preferred first (collector.urls, or collector.url as a list of one); all of one store. */
    urls: string[]
    /** Away from the preferred collector, how often a request tries it again. */
    failbackIntervalMs: number
    http2: Http2Mode
    timeoutMs: number
    caFile: string
    certFile: string
    keyFile: string
    allowInsecureHttp: boolean
    maxUnackedBytes: number
    maxBatchesPerRequest: number
    maxRequestBytes: number
    compression: RequestCompression
    retryInitialDelayMs: number
    retryMaxDelayMs: number
  }
  signing: { keyFile: string; createIfMissing: boolean; allowLoosePermissions: boolean; reloadIntervalMs: number }
  rules: { builtin: boolean; dirs: string[] }
  detectors: { builtin: boolean; dirs: string[] }
  /** Address lists for rules (agent/guard/networks.ts): the cluster's own networks (validated CIDRs) and a known-bad address file ('' for none). */
  guard: { clusterNetworks: string[]; knownBadAddressesFile: string }
  observe: { listen: string }
  /** extraPaths: per resource ("configmaps", "group/resource", "resource/subresource"), JSON paths whose values are redacted too. */
  redact: { enabled: boolean; extraPaths: Record<string, string[]> }
  alert: AlertConfig
  respond: RespondConfig
}

export const RESPONSE_ACTIONS = ['delete-pod', 'delete-binding', 'scale-to-zero', 'quarantine'] as const
export type ResponseAction = (typeof RESPONSE_ACTIONS)[number]
type SeverityName = AlertConfig['minSeverity']

/** One opt-in response: the findings it answers (rule or detector ids, or every finding from a severity up) and what it does. */
export type ResponsePolicy = { action: ResponseAction } & ({ rules: string[] } | { minSeverity: SeverityName })

/** Responders (agent/respond): act on the object of a finding through the API server, or say what they would do. */
export interface RespondConfig {
  enabled: boolean
  dryRun: boolean
  policies: ResponsePolicy[]
  excludeNamespaces: string[]
  /** Usernames (a trailing * is a prefix) never acted against, on top of the system identities. */
  excludeUsers: string[]
  /** Act on system:* users and kube-system service accounts too (off: they are the cluster's own machinery). */
  includeSystemIdentities: boolean
  /** Events older than this are not acted on: a replay of old backups must not delete today's pods. */
  maxEventAgeMs: number
  /** The same action on the same object is taken once within this window. */
  dedupWindowMs: number
  rateLimit: { perMinute: number; burst: number }
  queueSize: number
  maxAttempts: number
  apiServer: { url: string; caFile: string; tokenFile: string; timeoutMs: number }
}

/** Alerts (agent/alert): findings at or above `minSeverity` leave at once for the configured sinks. */
export interface AlertConfig {
  /** True when at least one sink is configured; no sink means no alerting. */
  enabled: boolean
  minSeverity: 'info' | 'low' | 'medium' | 'high' | 'critical'
  queueSize: number
  coolDownMs: number
  coolDownMaxKeys: number
  maxAlertsPerRequest: number
  closeTimeoutMs: number
  retry: { initialDelayMs: number; maxDelayMs: number; maxAttempts: number; maxAgeMs: number }
  /** Empty url: not configured. */
  alertmanager: {
    url: string
    timeoutMs: number
    resolveTimeoutMs: number
    caFile: string
    bearerTokenFile: string
    basicAuth: { username: string; passwordFile: string }
    allowInsecureHttp: boolean
  }
  /** Empty url: not configured. */
  webhook: {
    url: string
    timeoutMs: number
    format: 'object' | 'array'
    caFile: string
    bearerTokenFile: string
    hmacSecretFile: string
    allowInsecureHttp: boolean
  }
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

// --- the schema: every key, its type, its default (right for a kubeadm control-plane node) and its bounds

type Field =
  | { kind: 'string'; default: string; env?: string }
  | { kind: 'enum'; values: readonly string[]; default: string; aliases?: Readonly<Record<string, string>> }
  | { kind: 'bool'; default: boolean }
  | { kind: 'int'; default: number; min: number; max: number }
  | { kind: 'bytes'; default: number; min: number; max: number }
  | { kind: 'duration'; default: number; min: number; max: number }
  // flagList: a flag's value is a comma-separated list (a flag of any other list is one entry).
  | { kind: 'strings'; default: string[]; flagList?: true }
  // A list of mappings, checked by the section's own reader in finish() (which names each entry's field).
  | { kind: 'list'; default: unknown[] }
type Section = { [key: string]: Field | Section }

const MiB = 1024 * 1024
/** Where a pod's service account token and the cluster CA are mounted. */
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'
const SCHEMA = {
  node: { kind: 'string', default: '', env: 'NODE_NAME' },
  streamId: { kind: 'string', default: '' },
  stateDir: { kind: 'string', default: '/var/lib/auditrail' },
  logLevel: { kind: 'enum', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace'], default: 'info' },
  tail: {
    path: { kind: 'string', default: '/var/log/kubernetes/audit/audit.log' },
    // `beginning` was the name of `live` before `oldest` existed; old ConfigMaps keep working.
    startAt: { kind: 'enum', values: ['oldest', 'live', 'end'], default: 'oldest', aliases: { beginning: 'live' } },
    maxLineBytes: { kind: 'bytes', default: 4 * MiB, min: 1024, max: 64 * MiB },
    maxOpenFiles: { kind: 'int', default: 16, min: 2, max: 1024 },
    pollInterval: { kind: 'duration', default: 1000, min: 10, max: 60_000 },
    appendCheckInterval: { kind: 'duration', default: 50, min: 1, max: 10_000 },
  },
  quarantine: {
    dir: { kind: 'string', default: '' },
    maxBytes: { kind: 'bytes', default: 256 * MiB, min: 0, max: 1024 * 1024 * MiB },
  },
  batch: {
    maxEvents: { kind: 'int', default: 2000, min: 1, max: 100_000 },
    maxBytes: { kind: 'bytes', default: 1 * MiB, min: 1024, max: 64 * MiB },
    maxWait: { kind: 'duration', default: 100, min: 1, max: 60_000 },
    heartbeatInterval: { kind: 'duration', default: 10_000, min: 100, max: 3_600_000 },
  },
  collector: {
    // One collector (url), or several (urls, preferred first): one or the other. The --collector flag and
    // AUDITRAIL_COLLECTOR_URL (for a file that names none) are comma-separated lists.
    url: { kind: 'string', default: '' },
    urls: { kind: 'strings', default: [], flagList: true },
    failbackInterval: { kind: 'duration', default: 30_000, min: 1000, max: 3_600_000 },
    http2: { kind: 'enum', values: ['auto', 'always', 'never'], default: 'auto' },
    timeout: { kind: 'duration', default: 10_000, min: 100, max: 600_000 },
    caFile: { kind: 'string', default: '' },
    certFile: { kind: 'string', default: '' },
    keyFile: { kind: 'string', default: '' },
    allowInsecureHttp: { kind: 'bool', default: false },
    maxUnackedBytes: { kind: 'bytes', default: 8 * MiB, min: 64 * 1024, max: 1024 * MiB },
    maxBatchesPerRequest: { kind: 'int', default: 32, min: 1, max: 1024 },
    maxRequestBytes: { kind: 'bytes', default: 4 * MiB, min: 64 * 1024, max: 256 * MiB },
    compression: { kind: 'enum', values: ['zstd', 'gzip', 'none'], default: 'zstd' },
    retry: {
      initialDelay: { kind: 'duration', default: 250, min: 1, max: 60_000 },
      maxDelay: { kind: 'duration', default: 5_000, min: 1, max: 3_600_000 },
    },
  },
  signing: {
    keyFile: { kind: 'string', default: '/etc/auditrail/signing/ed25519.key.pem' },
    // On: a node without a key makes its own (in its state directory), so that no private key ever leaves it.
    createIfMissing: { kind: 'bool', default: false },
    allowLoosePermissions: { kind: 'bool', default: false },
    reloadInterval: { kind: 'duration', default: 10_000, min: 100, max: 3_600_000 },
  },
  rules: {
    builtin: { kind: 'bool', default: true },
    dirs: { kind: 'strings', default: [] },
  },
  detectors: {
    builtin: { kind: 'bool', default: true },
    dirs: { kind: 'strings', default: [] },
  },
  guard: {
    // Node, pod and service CIDRs and the load balancers in front of the apiserver; empty: rules on them stay quiet.
    clusterNetworks: { kind: 'strings', default: [] },
    knownBadAddressesFile: { kind: 'string', default: '' },
  },
  observe: {
    listen: { kind: 'string', default: '0.0.0.0:9787' },
  },
  redact: {
    enabled: { kind: 'bool', default: true },
    extraPaths: { kind: 'strings', default: [] },
  },
  alert: {
    minSeverity: { kind: 'enum', values: ['info', 'low', 'medium', 'high', 'critical'], default: 'high' },
    queueSize: { kind: 'int', default: 1000, min: 1, max: 1_000_000 },
    coolDown: { kind: 'duration', default: 300_000, min: 0, max: 86_400_000 },
    coolDownMaxKeys: { kind: 'int', default: 10_000, min: 1, max: 10_000_000 },
    maxAlertsPerRequest: { kind: 'int', default: 16, min: 1, max: 1000 },
    closeTimeout: { kind: 'duration', default: 2000, min: 0, max: 60_000 },
    retry: {
      initialDelay: { kind: 'duration', default: 250, min: 1, max: 60_000 },
      maxDelay: { kind: 'duration', default: 10_000, min: 1, max: 3_600_000 },
      maxAttempts: { kind: 'int', default: 10, min: 1, max: 1000 },
      maxAge: { kind: 'duration', default: 300_000, min: 100, max: 86_400_000 },
    },
    alertmanager: {
      url: { kind: 'string', default: '' },
      timeout: { kind: 'duration', default: 5000, min: 100, max: 600_000 },
      resolveTimeout: { kind: 'duration', default: 300_000, min: 1000, max: 86_400_000 },
      caFile: { kind: 'string', default: '' },
      bearerTokenFile: { kind: 'string', default: '' },
      basicAuth: {
        username: { kind: 'string', default: '' },
        passwordFile: { kind: 'string', default: '' },
      },
      allowInsecureHttp: { kind: 'bool', default: false },
    },
    webhook: {
      url: { kind: 'string', default: '' },
      timeout: { kind: 'duration', default: 5000, min: 100, max: 600_000 },
      format: { kind: 'enum', values: ['object', 'array'], default: 'object' },
      caFile: { kind: 'string', default: '' },
      bearerTokenFile: { kind: 'string', default: '' },
      hmacSecretFile: { kind: 'string', default: '' },
      allowInsecureHttp: { kind: 'bool', default: false },
    },
  },
  respond: {
    enabled: { kind: 'bool', default: false },
    // On until an operator has read what it would do: a wrong policy deletes real workloads.
    dryRun: { kind: 'bool', default: true },
    actions: { kind: 'list', default: [] },
    excludeNamespaces: { kind: 'strings', default: ['kube-system'] },
    excludeUsers: { kind: 'strings', default: [] },
    includeSystemIdentities: { kind: 'bool', default: false },
    maxEventAge: { kind: 'duration', default: 300_000, min: 1000, max: 86_400_000 },
    dedupWindow: { kind: 'duration', default: 600_000, min: 0, max: 86_400_000 },
    rateLimit: {
      perMinute: { kind: 'int', default: 6, min: 1, max: 6000 },
      burst: { kind: 'int', default: 3, min: 1, max: 1000 },
    },
    queueSize: { kind: 'int', default: 100, min: 1, max: 10_000 },
    maxAttempts: { kind: 'int', default: 3, min: 1, max: 10 },
    apiServer: {
      // Empty: in-cluster, https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT.
      url: { kind: 'string', default: '' },
      caFile: { kind: 'string', default: `${SERVICE_ACCOUNT_DIR}/ca.crt` },
      tokenFile: { kind: 'string', default: `${SERVICE_ACCOUNT_DIR}/token` },
      timeout: { kind: 'duration', default: 5000, min: 100, max: 60_000 },
    },
  },
} as const satisfies Section

/** Flags of `auditrail agent` that override keys of the file. */
export const AGENT_FLAGS = {
  log: 'tail.path',
  'state-dir': 'stateDir',
  collector: 'collector.urls',
  key: 'signing.keyFile',
  node: 'node',
  'stream-id': 'streamId',
  'start-at': 'tail.startAt',
  'metrics-listen': 'observe.listen',
  'log-level': 'logLevel',
  'ca-file': 'collector.caFile',
  'cert-file': 'collector.certFile',
  'key-file': 'collector.keyFile',
} as const

export interface LoadOptions {
  file?: string
  /** Dotted key -> raw value, from flags. */
  overrides?: Record<string, string | boolean>
  env?: NodeJS.ProcessEnv
}

export function loadAgentConfig(options: LoadOptions): AgentConfig {
  const where = options.file ? `config ${options.file}` : 'config'
  let doc: unknown = {}
  if (options.file) {
    let text: string
    try {
      text = readFileSync(options.file, 'utf8')
    } catch (err) {
      throw new ConfigError(`${where}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
    }
    const parsed = parseDocument(text, { uniqueKeys: true })
    if (parsed.errors.length > 0) {
      const e = parsed.errors[0]!
      throw new ConfigError(`${where}: not valid YAML at line ${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}`)
    }
    try { doc = parsed.toJS({ maxAliasCount: 100 }) ?? {} } catch (err) { throw new ConfigError(`${where}: not valid YAML: ${(err as Error).message.split('\n')[0]}`) }
  }
  const env = options.env ?? process.env
  const values = readSection(SCHEMA, doc, '', where, env)
  const collector = values.collector as { url: string; urls: string[] }
  if (!collector.url && collector.urls.length === 0 && env.AUDITRAIL_COLLECTOR_URL) collector.urls = commaList(env.AUDITRAIL_COLLECTOR_URL)
  for (const [key, raw] of Object.entries(options.overrides ?? {})) {
    const field = lookup(key)
    if (!field) throw new ConfigError(`${where}: unknown key ${key}`)
    const value = typeof raw === 'string' && field.kind === 'strings' ? (field.flagList ? commaList(raw) : [raw]) : raw
    setPath(values, key, readField(field, value, key, `flag for ${key}`))
    // A flag naming the collectors replaces the file's, in either form.
    if (key === 'collector.url') setPath(values, 'collector.urls', [])
    if (key === 'collector.urls') setPath(values, 'collector.url', '')
  }
  return finish(values as unknown as RawConfig, where, options.env ?? process.env)
}

// --- generic reading

type Values = { [key: string]: unknown }

function readSection(schema: Section, raw: unknown, prefix: string, where: string, env: NodeJS.ProcessEnv): Values {
  if (raw === null || raw === undefined) raw = {}
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`${where}: ${prefix || 'the top level'}: expected a mapping of keys`)
  const obj = raw as Record<string, unknown>
  for (const key of Object.keys(obj)) {
    if (!Object.hasOwn(schema, key)) {
      const known = Object.keys(schema).join(', ')
      throw new ConfigError(`${where}: unknown key ${prefix}${key} (known keys here: ${known})`)
    }
  }
  const out: Values = {}
  for (const [key, spec] of Object.entries(schema)) {
    const path = `${prefix}${key}`
    if ('kind' in spec) {
      let value = obj[key]
      if (value === undefined && spec.kind === 'string' && spec.env && env[spec.env]) value = env[spec.env]
      out[key] = value === undefined ? spec.default : readField(spec as Field, value, path, where)
    } else {
      out[key] = readSection(spec as Section, obj[key], `${path}.`, where, env)
    }
  }
  return out
}

function readField(field: Field, value: unknown, key: string, where: string): unknown {
  const fail = (expected: string): never => {
    throw new ConfigError(`${where}: ${key}: expected ${expected}, got ${JSON.stringify(value)}`)
  }
  switch (field.kind) {
    case 'string':
      return typeof value === 'string' ? value : fail('a string')
    case 'enum': {
      const named = typeof value === 'string' && field.aliases && Object.hasOwn(field.aliases, value) ? field.aliases[value] : value
      return typeof named === 'string' && field.values.includes(named) ? named : fail(`one of ${field.values.join(', ')}`)
    }
    case 'bool':
      if (typeof value === 'boolean') return value
      if (value === 'true' || value === 'false') return value === 'true'
      return fail('true or false')
    case 'strings':
      return Array.isArray(value) && value.every((v) => typeof v === 'string') ? value : fail('a list of strings')
    case 'list':
      return Array.isArray(value) ? value : fail('a list')
    case 'int':
    case 'bytes':
    case 'duration': {
      const n = field.kind === 'int' ? toInt(value) : field.kind === 'bytes' ? toBytes(value) : toMs(value)
      const unit = field.kind === 'int' ? '' : field.kind === 'bytes' ? ' bytes' : ' ms'
      const example = field.kind === 'int' ? 'a whole number' : field.kind === 'bytes' ? 'a size like "4MiB" or a number of bytes' : 'a duration like "250ms", "10s" or "5m"'
      if (n === undefined) return fail(example)
      if (n < field.min || n > field.max) {
        throw new ConfigError(`${where}: ${key}: ${JSON.stringify(value)} is out of range: allowed from ${field.min}${unit} to ${field.max}${unit}`)
      }
      return n
    }
  }
}

function commaList(v: string): string[] {
  return v.split(',').map((s) => s.trim()).filter((s) => s !== '')
}

function toInt(v: unknown): number | undefined {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v
  return typeof n === 'number' && Number.isSafeInteger(n) ? n : undefined
}

const BYTE_UNITS: Record<string, number> = { '': 1, B: 1, KiB: 1024, MiB: MiB, GiB: 1024 * MiB, KB: 1000, MB: 1e6, GB: 1e9 }
function toBytes(v: unknown): number | undefined {
  if (typeof v === 'number') return toInt(v)
  const m = typeof v === 'string' ? /^(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?$/.exec(v.trim()) : null
  const unit = m ? BYTE_UNITS[m[2] ?? ''] : undefined
  return m && unit ? Math.round(Number(m[1]) * unit) : undefined
}

const TIME_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
function toMs(v: unknown): number | undefined {
  const m = typeof v === 'string' ? /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(v.trim()) : null
  return m ? Math.round(Number(m[1]) * TIME_UNITS[m[2]!]!) : undefined
}

function lookup(key: string): Field | undefined {
  let node: Field | Section | undefined = SCHEMA
  for (const part of key.split('.')) {
    if (!node || 'kind' in node || !Object.hasOwn(node, part)) return undefined
    node = (node as Section)[part]
  }
  return node && 'kind' in node ? (node as Field) : undefined
}

function setPath(values: Values, key: string, value: unknown): void {
  const parts = key.split('.')
  let obj = values
  for (const part of parts.slice(0, -1)) obj = obj[part] as Values
  obj[parts.at(-1)!] = value
}

// --- cross-field checks and derived values

interface RawConfig {
  node: string
  streamId: string
  stateDir: string
  logLevel: AgentConfig['logLevel']
  tail: { path: string; startAt: StartAt; maxLineBytes: number; maxOpenFiles: number; pollInterval: number; appendCheckInterval: number }
  quarantine: { dir: string; maxBytes: number }
  batch: { maxEvents: number; maxBytes: number; maxWait: number; heartbeatInterval: number }
  collector: Omit<AgentConfig['collector'], 'urls' | 'failbackIntervalMs' | 'timeoutMs' | 'retryInitialDelayMs' | 'retryMaxDelayMs'> & { url: string; urls: string[]; failbackInterval: number; timeout: number; retry: { initialDelay: number; maxDelay: number } }
  signing: { keyFile: string; createIfMissing: boolean; allowLoosePermissions: boolean; reloadInterval: number }
  rules: { builtin: boolean; dirs: string[] }
  detectors: { builtin: boolean; dirs: string[] }
  guard: AgentConfig['guard']
  observe: { listen: string }
  redact: { enabled: boolean; extraPaths: string[] }
  alert: RawAlert
  respond: RawRespond
}

interface RawRespond {
  enabled: boolean
  dryRun: boolean
  actions: unknown[]
  excludeNamespaces: string[]
  excludeUsers: string[]
  includeSystemIdentities: boolean
  maxEventAge: number
  dedupWindow: number
  rateLimit: { perMinute: number; burst: number }
  queueSize: number
  maxAttempts: number
  apiServer: { url: string; caFile: string; tokenFile: string; timeout: number }
}

interface RawAlert {
  minSeverity: AlertConfig['minSeverity']
  queueSize: number
  coolDown: number
  coolDownMaxKeys: number
  maxAlertsPerRequest: number
  closeTimeout: number
  retry: { initialDelay: number; maxDelay: number; maxAttempts: number; maxAge: number }
  alertmanager: Omit<AlertConfig['alertmanager'], 'timeoutMs' | 'resolveTimeoutMs'> & { timeout: number; resolveTimeout: number }
  webhook: Omit<AlertConfig['webhook'], 'timeoutMs'> & { timeout: number }
}

const STREAM_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/

function finish(raw: RawConfig, where: string, env: NodeJS.ProcessEnv): AgentConfig {
  if (!raw.node) throw new ConfigError(`${where}: node is not set: set it in the file, with --node, or through the NODE_NAME environment variable (the DaemonSet sets it from spec.nodeName)`)
  const streamId = raw.streamId || raw.node
  if (!STREAM_ID.test(streamId)) throw new ConfigError(`${where}: streamId ${JSON.stringify(streamId)} must be letters, digits, '.', '_' or '-' (at most 253), starting with a letter or digit`)
  const urls = collectorUrls(raw.collector, where)
  if (Boolean(raw.collector.certFile) !== Boolean(raw.collector.keyFile)) throw new ConfigError(`${where}: collector.certFile and collector.keyFile go together: set both for mTLS, or neither`)
  if (raw.collector.retry.maxDelay < raw.collector.retry.initialDelay) throw new ConfigError(`${where}: collector.retry.maxDelay must not be below collector.retry.initialDelay`)
  if (raw.batch.maxBytes > raw.collector.maxUnackedBytes) throw new ConfigError(`${where}: batch.maxBytes must not exceed collector.maxUnackedBytes`)
  if (!/^\S+:\d+$/.test(raw.observe.listen)) throw new ConfigError(`${where}: observe.listen must be HOST:PORT, got ${JSON.stringify(raw.observe.listen)}`)
  return {
    node: raw.node,
    streamId,
    stateDir: raw.stateDir,
    logLevel: raw.logLevel,
    tail: { path: raw.tail.path, startAt: raw.tail.startAt, maxLineBytes: raw.tail.maxLineBytes, maxOpenFiles: raw.tail.maxOpenFiles, pollIntervalMs: raw.tail.pollInterval, appendCheckIntervalMs: raw.tail.appendCheckInterval },
    quarantine: { dir: raw.quarantine.dir || join(raw.stateDir, 'quarantine'), maxBytes: raw.quarantine.maxBytes },
    batch: { maxEvents: raw.batch.maxEvents, maxBytes: raw.batch.maxBytes, maxWaitMs: raw.batch.maxWait, heartbeatIntervalMs: raw.batch.heartbeatInterval },
    collector: {
      urls,
      failbackIntervalMs: raw.collector.failbackInterval,
      http2: raw.collector.http2,
      timeoutMs: raw.collector.timeout,
      caFile: raw.collector.caFile,
      certFile: raw.collector.certFile,
      keyFile: raw.collector.keyFile,
      allowInsecureHttp: raw.collector.allowInsecureHttp,
      maxUnackedBytes: raw.collector.maxUnackedBytes,
      maxBatchesPerRequest: raw.collector.maxBatchesPerRequest,
      maxRequestBytes: raw.collector.maxRequestBytes,
      compression: raw.collector.compression,
      retryInitialDelayMs: raw.collector.retry.initialDelay,
      retryMaxDelayMs: raw.collector.retry.maxDelay,
    },
    signing: { keyFile: raw.signing.keyFile, createIfMissing: raw.signing.createIfMissing, allowLoosePermissions: raw.signing.allowLoosePermissions, reloadIntervalMs: raw.signing.reloadInterval },
    rules: raw.rules,
    detectors: raw.detectors,
    guard: { clusterNetworks: clusterNetworks(raw.guard.clusterNetworks, where), knownBadAddressesFile: raw.guard.knownBadAddressesFile },
    observe: raw.observe,
    redact: { enabled: raw.redact.enabled, extraPaths: redactionPaths(raw.redact.extraPaths, where) },
    alert: finishAlert(raw.alert, where),
    respond: finishRespond(raw.respond, where, env),
  }
}

const POLICY_KEYS = ['rules', 'minSeverity', 'action']

function finishRespond(raw: RawRespond, where: string, env: NodeJS.ProcessEnv): RespondConfig {
  const policies = raw.actions.map((entry, i): ResponsePolicy => {
    const key = `respond.actions[${i}]`
    const fail = (message: string): never => {
      throw new ConfigError(`${where}: ${key}${message}`)
    }
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return fail(': expected a mapping like {rules: [privileged-container], action: delete-pod} or {minSeverity: critical, action: quarantine}')
    const e = entry as Record<string, unknown>
    for (const k of Object.keys(e)) if (!POLICY_KEYS.includes(k)) fail(`: unknown key ${k} (known keys here: ${POLICY_KEYS.join(', ')})`)
    if (!(RESPONSE_ACTIONS as readonly string[]).includes(e.action as string)) fail(`.action: expected one of ${RESPONSE_ACTIONS.join(', ')}, got ${JSON.stringify(e.action)}`)
    const action = e.action as ResponseAction
    if ((e.rules === undefined) === (e.minSeverity === undefined)) fail(': set rules (a list of rule or detector ids) or minSeverity, exactly one of them')
    if (e.rules !== undefined) {
      if (!Array.isArray(e.rules) || e.rules.length === 0 || !e.rules.every((r) => typeof r === 'string' && r !== '')) return fail(`.rules: expected a non-empty list of rule or detector ids, got ${JSON.stringify(e.rules)}`)
      return { action, rules: e.rules as string[] }
    }
    const severities = ['info', 'low', 'medium', 'high', 'critical']
    if (!severities.includes(e.minSeverity as string)) fail(`.minSeverity: expected one of ${severities.join(', ')}, got ${JSON.stringify(e.minSeverity)}`)
    return { action, minSeverity: e.minSeverity as SeverityName }
  })
  if (raw.enabled && policies.length === 0) throw new ConfigError(`${where}: respond.enabled is true but respond.actions is empty: list what to do, e.g. [{rules: [privileged-container], action: delete-pod}], or turn respond.enabled off`)
  let url = raw.apiServer.url
  if (!url && env.KUBERNETES_SERVICE_HOST) {
    const host = env.KUBERNETES_SERVICE_HOST.includes(':') ? `[${env.KUBERNETES_SERVICE_HOST}]` : env.KUBERNETES_SERVICE_HOST
    url = `https://${host}:${env.KUBERNETES_SERVICE_PORT || '443'}`
  }
  if (raw.enabled) {
    if (!url) throw new ConfigError(`${where}: respond.apiServer.url is not set and KUBERNETES_SERVICE_HOST is not in the environment: set the API server's URL (e.g. https://127.0.0.1:6443), or run the agent in a pod`)
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      throw new ConfigError(`${where}: respond.apiServer.url ${JSON.stringify(url)} is not a URL (expected e.g. https://127.0.0.1:6443)`)
    }
    // The responder sends a bearer token that may delete pods: never in clear.
    if (parsed.protocol !== 'https:') throw new ConfigError(`${where}: respond.apiServer.url must use https (the responder sends its token), got ${parsed.protocol}`)
    if (parsed.username || parsed.password || (parsed.pathname !== '/' && parsed.pathname !== '')) throw new ConfigError(`${where}: respond.apiServer.url must be https://HOST:PORT, without credentials or a path; the token comes from respond.apiServer.tokenFile`)
    url = parsed.origin
    if (!raw.apiServer.tokenFile) throw new ConfigError(`${where}: respond.apiServer.tokenFile is empty: the responder acts under its own identity, so the audit log shows who acted; mount a service account token and name its file`)
  }
  return {
    enabled: raw.enabled,
    dryRun: raw.dryRun,
    policies,
    excludeNamespaces: raw.excludeNamespaces,
    excludeUsers: raw.excludeUsers,
    includeSystemIdentities: raw.includeSystemIdentities,
    maxEventAgeMs: raw.maxEventAge,
    dedupWindowMs: raw.dedupWindow,
    rateLimit: raw.rateLimit,
    queueSize: raw.queueSize,
    maxAttempts: raw.maxAttempts,
    apiServer: { url, caFile: raw.apiServer.caFile, tokenFile: raw.apiServer.tokenFile, timeoutMs: raw.apiServer.timeout },
  }
}

/**
 * The most collectors one agent lists: each is a label value of auditrail_sending_to, and a failover
 * tries them in turn. A tier with more replicas sits behind a Service (one URL).
 */
const MAX_COLLECTOR_URLS = 8

/** collector.urls, or collector.url as a list of one: each a collector's base URL, checked and named by its place. */
function collectorUrls(raw: RawConfig['collector'], where: string): string[] {
  if (raw.url && raw.urls.length > 0) throw new ConfigError(`${where}: collector.url and collector.urls are both set: keep one (collector.urls lists several collectors, preferred first; collector.url is the form for one)`)
  const entries = raw.urls.length > 0 ? raw.urls.map((u, i) => [u, `collector.urls[${i}]`] as const) : raw.url ? [[raw.url, 'collector.url'] as const] : []
  if (entries.length === 0) throw new ConfigError(`${where}: collector.url is not set: set collector.url (or collector.urls for several) in the file, or --collector https://HOST:PORT[,https://HOST2:PORT]`)
  if (entries.length > MAX_COLLECTOR_URLS) throw new ConfigError(`${where}: collector.urls: ${entries.length} entries; the limit is ${MAX_COLLECTOR_URLS} (put a tier of more replicas behind one Service URL)`)
  const urls: string[] = []
  for (const [value, key] of entries) {
    let url: URL
    try {
      url = new URL(value)
    } catch {
      throw new ConfigError(`${where}: ${key} ${JSON.stringify(value)} is not a URL (expected e.g. https://collector.auditrail.svc:8443)`)
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError(`${where}: ${key} must use https (or http to a loopback address), got ${url.protocol}`)
    if (url.protocol === 'http:' && !isLoopback(url.hostname) && !raw.allowInsecureHttp) {
      throw new ConfigError(`${where}: ${key} uses plain http to ${url.hostname}: audit data would cross the network unencrypted. Use https, or set collector.allowInsecureHttp: true if you really mean it`)
    }
    // Credentials would end up in logs and metric labels, which name the URL.
    if (url.username || url.password) throw new ConfigError(`${where}: ${key} must not carry credentials; use a client certificate (collector.certFile, collector.keyFile)`)
    const normalized = url.toString().replace(/\/$/, '')
    if (urls.includes(normalized)) throw new ConfigError(`${where}: ${key} ${JSON.stringify(value)} is listed twice: list each collector once`)
    urls.push(normalized)
  }
  return urls
}

/** Every entry an address or CIDR, so a typo fails the start instead of calling a node's requests foreign. */
function clusterNetworks(entries: string[], where: string): string[] {
  if (entries.length > MAX_CLUSTER_NETWORKS) throw new ConfigError(`${where}: guard.clusterNetworks: ${entries.length} entries; the limit is ${MAX_CLUSTER_NETWORKS} (list networks, not addresses)`)
  try {
    new NetworkSet(entries)
  } catch (err) {
    if (err instanceof NetworkSyntaxError) throw new ConfigError(`${where}: guard.clusterNetworks[${err.index}]: ${err.message}`)
    throw err
  }
  return entries
}

function finishAlert(raw: RawAlert, where: string): AlertConfig {
  if (raw.retry.maxDelay < raw.retry.initialDelay) throw new ConfigError(`${where}: alert.retry.maxDelay must not be below alert.retry.initialDelay`)
  const am = raw.alertmanager
  const wh = raw.webhook
  if (am.basicAuth.username && am.bearerTokenFile) throw new ConfigError(`${where}: alert.alertmanager: set basicAuth or bearerTokenFile, not both`)
  if (Boolean(am.basicAuth.username) !== Boolean(am.basicAuth.passwordFile)) throw new ConfigError(`${where}: alert.alertmanager.basicAuth.username and alert.alertmanager.basicAuth.passwordFile go together: set both, or neither`)
  const amUrl = am.url ? sinkUrl(am.url, 'alert.alertmanager', Boolean(am.bearerTokenFile || am.basicAuth.username), am.allowInsecureHttp, where) : ''
  const whUrl = wh.url ? sinkUrl(wh.url, 'alert.webhook', Boolean(wh.bearerTokenFile), wh.allowInsecureHttp, where) : ''
  for (const [key, set] of [['alert.alertmanager', am.caFile || am.bearerTokenFile || am.basicAuth.username], ['alert.webhook', wh.caFile || wh.bearerTokenFile || wh.hmacSecretFile]] as const) {
    if (set && !(key === 'alert.alertmanager' ? amUrl : whUrl)) throw new ConfigError(`${where}: ${key} has settings but no url: set ${key}.url, or remove the section`)
  }
  return {
    enabled: Boolean(amUrl || whUrl),
    minSeverity: raw.minSeverity,
    queueSize: raw.queueSize,
    coolDownMs: raw.coolDown,
    coolDownMaxKeys: raw.coolDownMaxKeys,
    maxAlertsPerRequest: raw.maxAlertsPerRequest,
    closeTimeoutMs: raw.closeTimeout,
    retry: { initialDelayMs: raw.retry.initialDelay, maxDelayMs: raw.retry.maxDelay, maxAttempts: raw.retry.maxAttempts, maxAgeMs: raw.retry.maxAge },
    alertmanager: {
      url: amUrl,
      timeoutMs: am.timeout,
      resolveTimeoutMs: am.resolveTimeout,
      caFile: am.caFile,
      bearerTokenFile: am.bearerTokenFile,
      basicAuth: am.basicAuth,
      allowInsecureHttp: am.allowInsecureHttp,
    },
    webhook: { url: whUrl, timeoutMs: wh.timeout, format: wh.format, caFile: wh.caFile, bearerTokenFile: wh.bearerTokenFile, hmacSecretFile: wh.hmacSecretFile, allowInsecureHttp: wh.allowInsecureHttp },
  }
}

/** A sink's URL: http(s), no credentials in it, and no credential sent in clear over the network. */
function sinkUrl(raw: string, key: string, sendsCredentials: boolean, allowInsecureHttp: boolean, where: string): string {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new ConfigError(`${where}: ${key}.url ${JSON.stringify(raw)} is not a URL (expected e.g. http://alertmanager-operated.monitoring.svc:9093)`)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError(`${where}: ${key}.url must use http or https, got ${url.protocol}`)
  if (url.username || url.password) throw new ConfigError(`${where}: ${key}.url must not carry credentials; put them in a file (${key}.${key.endsWith('alertmanager') ? 'basicAuth.passwordFile or bearerTokenFile' : 'bearerTokenFile'})`)
  if (url.protocol === 'http:' && sendsCredentials && !isLoopback(url.hostname) && !allowInsecureHttp) {
    throw new ConfigError(`${where}: ${key}.url uses plain http to ${url.hostname}, and a credential is configured: it would cross the network in clear. Use https, or set ${key}.allowInsecureHttp: true if you really mean it`)
  }
  // The Alertmanager URL is a base (a path prefix is kept); the webhook URL is used exactly as written.
  return key === 'alert.alertmanager' ? url.toString().replace(/\/$/, '') : url.toString()
}

const EXTRA_PATH = /^([a-z0-9.-]+(?:\/[a-z0-9.-]+){0,2})=((?:requestObject|responseObject)(?:\.[^.\s]+)+)$/

/** "configmaps=requestObject.data.*" entries, grouped by resource; `*` is any key, `[*]` any list element. */
function redactionPaths(entries: string[], where: string): Record<string, string[]> {
  const out: Record<string, string[]> = {}
  for (const entry of entries) {
    const m = EXTRA_PATH.exec(entry)
    if (!m) throw new ConfigError(`${where}: redact.extraPaths: ${JSON.stringify(entry)} is not RESOURCE=PATH; write e.g. "configmaps=requestObject.data.*" or "example.com/widgets=responseObject.spec.token" (PATH starts with requestObject or responseObject; * is any key, [*] any list element)`)
    ;(out[m[1]!] ??= []).push(m[2]!)
  }
  return out
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)
}
