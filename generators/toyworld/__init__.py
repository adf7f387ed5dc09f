"""ToyWorld: a procedural world of coloured primitives, its renderer, judge and a CPU-trained prior (see README.md)."""
