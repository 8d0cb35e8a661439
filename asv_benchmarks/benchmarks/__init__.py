"""asv benchmarks of fastmlp: training epochs, prediction, throughput and start-up."""
