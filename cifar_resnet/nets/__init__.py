"""The papers' nets: blocks and custom layers, constructors, variants, the shipped weights."""
