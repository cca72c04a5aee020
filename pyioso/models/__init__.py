"""The networks: torchvision definitions, the layer zoo, checkpoints (training, loading) and op counts."""
