//! Benchmarks of curio against its peers.
