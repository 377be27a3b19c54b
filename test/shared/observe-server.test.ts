// The agent's health and metrics port under a flood of idle connections (issue 20): a cap on
// connections, idle ones closed, and the endpoints answer again as soon as there is room.
import { once } from 'node:events'
import { connect } from 'node:net'
import t from 'tap'
import { Registry } from 'prom-client'
import { startObserveServer } from '../../shared/observe-server.ts'

/** Waits until `check` holds (a busy machine is slow to deliver the closes), at most 20 s; returns whether it did. */
async function eventually(check: () => boolean): Promise<boolean> {
  for (const deadline = performance.now() + 20_000; performance.now() < deadline; await new Promise((r) => setTimeout(r, 20))) if (check()) return true
  return check()
}

async function flood(port: string, n: number) {
  return Promise.all(Array.from({ length: n }, async () => {
    const socket = connect(Number(port), '127.0.0.1')
    socket.on('error', () => {})
    await once(socket, 'connect')
    return socket
  }))
}

t.test('a flood of idle connections is capped: what is over the cap is closed, what is under it stays', async (t) => {
  // An idle timeout far longer than the test: only the cap can close connections here.
  const server = await startObserveServer({ listen: '127.0.0.1:0', registry: new Registry(), ready: () => true, limits: { maxConnections: 8, idleTimeoutMs: 600_000 } })
  t.teardown(() => server.close())
  const sockets = await flood(new URL(server.url).port, 200)
  t.teardown(() => sockets.forEach((s) => s.destroy()))
  const open = () => sockets.filter((s) => !s.closed).length
  t.ok(await eventually(() => open() <= 8), `${open()} of 200 held open`)
  await new Promise((r) => setTimeout(r, 300))
  t.ok(open() >= 1, `the cap keeps connections under it (${open()} open)`)
})

t.test('idle connections are closed after the idle timeout; /livez answers after the flood', async (t) => {
  const server = await startObserveServer({ listen: '127.0.0.1:0', registry: new Registry(), ready: () => true, limits: { maxConnections: 8, idleTimeoutMs: 500 } })
  t.teardown(() => server.close())
  const sockets = await flood(new URL(server.url).port, 200)
  t.teardown(() => sockets.forEach((s) => s.destroy()))
  t.ok(await eventually(() => sockets.every((s) => s.closed)), 'idle connections are closed')
  const res = await fetch(`${server.url}/livez`)
  t.equal(res.status, 200)
  t.equal(await res.text(), 'ok\n')
})

t.test('by default the cap and the timeout hold too', async (t) => {
  const server = await startObserveServer({ listen: '127.0.0.1:0', registry: new Registry(), ready: () => true })
  t.teardown(() => server.close())
  const { port } = new URL(server.url)
  const sockets = await flood(port, 100)
  t.teardown(() => sockets.forEach((s) => s.destroy()))
  const open = () => sockets.filter((s) => !s.closed).length
  t.ok(await eventually(() => open() <= 64), `${open()} of 100 held open`)
  t.equal(open(), 64, 'the default cap: 64')
})
