"""Integer networks: the golden executor, the round-to-nearest builder, the artifact on disk, single-layer cases."""
