"""Speed tools: benchmarks as fractions of the machine's measured peak, before/after comparisons, the GPU check."""
