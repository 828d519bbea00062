"""The bottom of the stages: names, errors, the bundle on disk (manifest, durable writes, sha256, path
containment), results bound to bytes, image decoding, native log filtering, the statistics and parity
gates every stage shares, and the `Hooks` every stage reports progress through. Imports nothing of edgecls
above it."""
