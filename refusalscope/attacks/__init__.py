"""Attacks on refusal, one module each, all of one shape (`base.Attack`) and one registry.

`registry.REGISTRY` maps names to attacks: `lora` (weights: LoRA fine-tuning), `gcg`,
`autodan` and `template` (prompt attacks). `runner.run_attack` runs any of them into a run
folder; `runner.attack(name, handle, requests, **cfg)` runs one in memory. Every result has
one schema (`base.AttackResult`). Add an attack: a module with a frozen config and an object
with the protocol's attributes, and `registry.register(obj)`.
"""
