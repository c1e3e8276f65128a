"""Pure functions: an effective tenant -> the desired child manifests (dicts). No I/O."""
