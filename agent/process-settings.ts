// How the agent process is started: V8 flags and environment. The image (its ENTRYPOINT
// and ENV), `npm run bench` and the end-to-end tests use them; a test holds the Dockerfile
// to them. Neither can be set from inside the process once it runs (V8 has sized its heap,
// glibc has made its arenas), hence settings for whoever starts it.
//
// --max-semi-space-size=4: V8 sizes the young generation from the machine's memory (64 MiB
// on a 24 GiB node). The agent's garbage is short-lived (lines, parsed events), and a
// smaller young generation is scavenged more often but cheaper. Measured on the catch-up of
// 300,000 generated events (2 cores): default 58.2 CPU s per million events, peak RSS 314
// MiB; 16 MiB: 44.4 s, 290 MiB; 8 MiB: 45.5 s, 279 MiB; 4 MiB: 46.4 s, 268 MiB.
//
// No --initial-old-space-size. 64 (with a young generation of 8) was set when V8 ran a full
// mark-compact every 450 ms at a steady 3,000 events/s and GC took a third of the agent's CPU.
// The agent allocates far less per event since, and an old generation left to grow to 64 MiB
// before its first full collection only raised the peaks. `npm run bench`, 2026-12-07, quiet
// 2-core machine, runs interleaved (4 with 8 and 64, 3 with 4 alone):
//   idle RSS 113-120 -> 101-110 MiB; steady 3,000/s 8.1-11.5 -> 9.2-10.7% of a core, peak
//   137-164 -> 122-128 MiB; 60 s outage peak 169-207 -> 150-161 MiB; 300,000 generated events
//   16.8-21.3 -> 19.0-20.4 CPU s per million, peak 171-215 -> 170-176 MiB; the real log (2 runs
//   each beside Fluent Bit) 19-20 -> 18-20 µs per event (1.83x -> 1.74x Fluent Bit's), peak
//   154-159 -> 148-150 MiB. An old generation of 32 MiB with the young of 4: outage peak 185.
//
// --no-concurrent-recompilation: V8 optimizes hot functions on the main thread instead of its
// worker threads. Compiling the rules at start makes many functions hot at once; the compiler's
// scratch memory, malloc'd on the workers and interleaved with their other allocations, stayed
// in glibc's second arena when freed (16 MB of it held, 0.3 MB in use, in gdb's malloc_stats).
// --liftoff-only: undici's HTTP parser is WebAssembly, and about 20 s after start (the second
// heartbeat's acknowledgement) V8 compiled it again with its optimizing compiler on a worker:
// 10 MiB more RSS for good, for a parser that reads a few hundred bytes per request.
// (V8's help lists --liftoff-only for testing; the project pins its Node, and the end-to-end tests
// start the compiled agent with these flags.)
// Idle agent in sync on an empty log after 26 s: 107-111 -> 91 MiB (malloc_trim in gdb then
// frees 0.8 MiB, against 19 before). `npm run bench -- --phase pipeline`, 3 interleaved pairs on
// a slow day of this 2-core VM: idle (30 s) 104-107 -> 91 MiB; 300,000 events at full speed
// 49.4-63.0 -> 49.0-50.1 CPU s per million, peak 169-171 -> 160-164 MiB; steady 3,000/s
// 19.6-22.9% of a core both, peak 131-138 -> 113-130 MiB; 60 s outage peak 150-159 -> 134-150 MiB.
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4', '--no-concurrent-recompilation', '--liftoff-only']

// MALLOC_ARENA_MAX=2: glibc gives each thread that mallocs (libuv's pool compressing and
// hashing, V8's GC helpers) an arena of its own, and freed memory stays in them. Two arenas:
// peak RSS 20 MiB lower (4 interleaved pairs: catch-up of 300,000 events 254-260 -> 227-243
// MiB, steady 3,000/s 228-242 -> 213-225 MiB), events/s and CPU unchanged.
export const AGENT_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' }
