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
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8']

// MALLOC_ARENA_MAX=2: glibc gives each thread that mallocs (libuv's pool compressing and
// hashing, V8's GC helpers) an arena of its own, and freed memory stays in them. Two arenas:
// peak RSS 20 MiB lower (4 interleaved pairs: catch-up of 300,000 events 254-260 -> 227-243
// MiB, steady 3,000/s 228-242 -> 213-225 MiB), events/s and CPU unchanged.
export const AGENT_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' }
