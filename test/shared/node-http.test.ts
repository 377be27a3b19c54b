// The metrics and health server does not load Node's own copy of undici (about 2.5 MiB of the idle
// agent's RSS, docs/benchmarks.md): node:http reached as an ES module import would load it.
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const OBSERVE_SERVER = fileURLToPath(new URL('../../shared/observe-server.ts', import.meta.url))

/** Whether Node's undici is loaded in a fresh process after `script` (an ES module) ran. */
function loadsNodesUndici(script: string): boolean {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', `${script}\nconsole.log(process.moduleLoadList.some((m) => m.includes('internal/deps/undici')))`], { encoding: 'utf8' })
  return out.trim().split('\n').at(-1) === 'true'
}

t.test('a started observe server leaves Node\'s undici unloaded', async (t) => {
  t.equal(loadsNodesUndici(`import { Registry } from 'prom-client'
const { startObserveServer } = await import(${JSON.stringify(OBSERVE_SERVER)})
const server = await startObserveServer({ listen: '127.0.0.1:0', registry: new Registry(), ready: () => true })
await server.close()`), false)
})

t.test('the check can fail: an ES module import of node:http loads it', async (t) => {
  t.equal(loadsNodesUndici(`await import('node:http')`), true)
})
