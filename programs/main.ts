#!/usr/bin/env node
// `auditrail`: one binary for the agent, the reference collector, the offline
// verifier and the tools around them. Each subcommand parses its own flags
// strictly: an unknown flag is an error that names it.
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util'
import { AuditAgent } from '../agent/agent.ts'
import { createAlertDispatcher } from '../agent/alert/dispatcher.ts'
import { AGENT_FLAGS, ConfigError, loadAgentConfig, type AgentConfig } from '../agent/config.ts'
import { generateKeyPair } from '../agent/keygen.ts'
import { createLogger } from '../shared/logger.ts'
import { AgentMetrics } from '../agent/observe/metrics.ts'
import { startObserveServer } from '../shared/observe-server.ts'

const USAGE = `usage: auditrail <command> [flags]

commands:
  agent      tail the apiserver audit log, seal batches and ship them to a collector
  collector  run the reference collector (verifies every seal and the chain, stores append-only)
  verify     check a collector store end to end (signatures, chain, no gaps)
  export     print the stored event lines of a stream, exactly as shipped
  query      search a collector's index (events, findings) by user, object, time, severity...
  keygen     write an Ed25519 key pair for a node
  config     'config check FILE': print the effective agent configuration
  demo       run a collector and an agent on 127.0.0.1 against a generated, rotating audit log
  policy     'policy check POLICY.yaml': name every event the apiserver's audit policy hides from Auditrail
  rules      'rules lint DIR', 'rules test FILE', 'rules admission': compile guardrail rules, replay an audit log
             through them, print them as ValidatingAdmissionPolicies

'auditrail <command> --help' shows a command's flags.
`

type Command = (argv: string[]) => Promise<number>

const COMMANDS: Record<string, Command> = {
  agent: agentCommand,
  keygen: keygenCommand,
  config: configCommand,
  collector: async (argv) => (await import('../collector/cli.ts')).collectorCommand(argv),
  verify: async (argv) => (await import('../collector/cli.ts')).verifyCommand(argv),
  export: async (argv) => (await import('../collector/cli.ts')).exportCommand(argv),
  query: async (argv) => (await import('../collector/cli.ts')).queryCommand(argv),
  demo: async (argv) => (await import('./demo.ts')).demoCommand(argv),
  policy: async (argv) => (await import('../agent/policy/cli.ts')).policyCommand(argv),
  rules: async (argv) => (await import('../agent/guard/cli.ts')).rulesCommand(argv),
}

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE)
    return name ? 0 : 2
  }
  const command = COMMANDS[name]
  if (!command) {
    process.stderr.write(`auditrail: unknown command ${JSON.stringify(name)}\n\n${USAGE}`)
    return 2
  }
  try {
    return await command(rest)
  } catch (err) {
    const e = err as Error & { code?: string }
    if (e instanceof UsageError || e instanceof ConfigError || e.name === 'PolicyError' || e.name === 'UsageError' || e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      process.stderr.write(`auditrail ${name}: ${e.message}\n`)
      return 2
    }
    process.stderr.write(`auditrail ${name}: ${e.message}\n`)
    return 1
  }
}

// --- agent

const agentOptions: ParseArgsOptionsConfig = {
  config: { type: 'string' },
  ...Object.fromEntries(Object.keys(AGENT_FLAGS).map((flag) => [flag, { type: 'string' }])),
  'allow-loose-key-permissions': { type: 'boolean' },
  'allow-insecure-http': { type: 'boolean' },
  help: { type: 'boolean' },
}

function agentConfigFromArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const { values } = parseArgs({ args: argv, options: agentOptions, strict: true, allowPositionals: false })
  const overrides: Record<string, string | boolean> = {}
  for (const [flag, key] of Object.entries(AGENT_FLAGS)) {
    const v = values[flag]
    if (typeof v === 'string') overrides[key] = v
  }
  if (values['allow-loose-key-permissions']) overrides['signing.allowLoosePermissions'] = true
  if (values['allow-insecure-http']) overrides['collector.allowInsecureHttp'] = true
  return loadAgentConfig({ ...(typeof values.config === 'string' ? { file: values.config } : {}), overrides, env })
}

async function agentCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help')) {
    process.stdout.write(`usage: auditrail agent [--config FILE] [--log PATH] [--state-dir DIR] [--collector URL[,URL...]] [--key FILE] [--node NAME]
       [--stream-id ID] [--start-at oldest|live|end] [--metrics-listen HOST:PORT] [--log-level LEVEL]
       [--ca-file F] [--cert-file F --key-file F] [--allow-loose-key-permissions] [--allow-insecure-http]
flags override the file; NODE_NAME sets the node when neither does. Several --collector URLs (collectors
of one store, preferred first): the agent moves to the next when one is unreachable and returns to the first.
`)
    return 0
  }
  const config = agentConfigFromArgs(argv)
  const logger = createLogger(config.logLevel)
  const metrics = new AgentMetrics()
  const alerts = createAlertDispatcher(config, { logger, metrics })
  const agent = new AuditAgent(config, { logger, metrics, ...(alerts ? { onFinding: alerts.onFinding } : {}) })
  const observe = await startObserveServer({ listen: config.observe.listen, registry: agent.metrics.registry, ready: () => agent.ready })
  logger.info({ metrics: `${observe.url}/metrics` }, 'observe server listening')
  let stopping = false
  const stopped = new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      if (stopping) return
      stopping = true
      logger.info({ signal }, 'stopping: sealing what was read and waiting for the collector')
      void agent.stop().then(() => alerts?.close()).then(() => observe.close()).then(() => resolve(0))
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
  try {
    await agent.start()
  } catch (err) {
    await alerts?.close(0)
    await observe.close()
    throw err
  }
  return stopped
}

// --- keygen, config

async function keygenCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { out: { type: 'string' } }, strict: true })
  if (!values.out) throw new UsageError('--out PREFIX is required (writes PREFIX.key.pem and PREFIX.pub.pem)')
  const { keyFile, publicKeyFile, keyId } = generateKeyPair(values.out)
  process.stdout.write(`private key: ${keyFile} (mode 0600; give it to the agent with --key)\npublic key:  ${publicKeyFile} (give it to the collector with --trust)\nkey id:      ${keyId}\n`)
  return 0
}

async function configCommand(argv: string[]): Promise<number> {
  const [sub, file, ...rest] = argv
  if (sub !== 'check' || !file || rest.length > 0) throw new UsageError('usage: auditrail config check FILE')
  const config = loadAgentConfig({ file })
  process.stdout.write(`${JSON.stringify(config, null, 2)}\n`)
  return 0
}

// A reader that goes away early (`auditrail export | head`) is not an error of
// ours: stop quietly, as other Unix tools do.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
  throw err
})

process.exitCode = await main(process.argv.slice(2))
