"""Benchmarks behind ``resnet3d bench``; see ``resnet3d.bench.common`` for the output format."""
