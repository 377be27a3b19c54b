// How the agent process is started: V8 flags and environment. The image (its ENTRYPOINT
// and ENV), `npm run bench` and the end-to-end tests use them; a test holds the Dockerfile
// to them. Neither can be set from inside the process once it runs (V8 has sized its heap,
// glibc has made its arenas), hence settings for whoever starts it.
//
// --max-semi-space-size: V8 sizes the young generation from the machine's memory (64 MiB
// on a 24 GiB node). The agent's garbage is short-lived (lines, parsed events), and a
// smaller young generation is scavenged more often but cheaper. Measured on the catch-up of
// 300,000 generated events (2 cores): default 58.2 CPU s per million events, peak RSS 314
// MiB; 16 MiB: 44.4 s, 290 MiB; 8 MiB: 45.5 s, 279 MiB; 4 MiB: 46.4 s, 268 MiB.
//
// --initial-old-space-size=64: at a steady 3,000 events/s V8 ran a full mark-compact every
// 450 ms on an old generation of about 30 MiB (started by its GC task, far below any limit
// the agent would mind), and a third of the agent's CPU went to GC threads. Measured with the
// compiled agent, 20 s at 3,000/s (per-thread CPU from /proc, 2026-12-07): 47 mark-compacts
// and 34.4% of a core by default; 64: 18 and 26.2%; 96: 8 and 23.1%. In the bench's steady
// phase, 35.0% -> 27.9% of a core for 147 -> 170 MiB of peak RSS and 127 -> 139 MiB idle:
// 64 takes most of the CPU for the smaller part of the memory.
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8', '--initial-old-space-size=64']

// MALLOC_ARENA_MAX=2: glibc gives each thread that mallocs (libuv's pool compressing and
// hashing, V8's GC helpers) an arena of its own, and freed memory stays in them. Two arenas:
// peak RSS 20 MiB lower (4 interleaved pairs: catch-up of 300,000 events 254-260 -> 227-243
// MiB, steady 3,000/s 228-242 -> 213-225 MiB), events/s and CPU unchanged.
export const AGENT_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' }
