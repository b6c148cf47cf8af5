"""Speed and memory harness of the search and final-training steps (`itnas bench`), outside the library and the
pipeline: `benchmark` (steppers, peak memory, `run_bench`, side-by-side runs of two checkouts), `bench_timing`
(interleaved rounds, medians, ratios), `side_worker` (the process that times one side), `bench` (the command's
body: table and JSON)."""
