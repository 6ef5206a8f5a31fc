"""Framework-neutral parts of signxai: numerics, targets, the layer graph, LRP rules and the method drivers."""
