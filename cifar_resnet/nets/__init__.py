"""The papers' nets: layers, blocks, constructors, variants, presets."""
