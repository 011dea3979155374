"""Defenses against refusal-removing attacks: tamper-resistant fine-tuning (`tar`), and adding
the refusal direction back while generating with an attacked model (`steer`).

Each is one module with a frozen config and an object with the `base.Defense` protocol,
registered in `registry` (adding one: a module + one `register(...)` line); `runner` runs any
of them into a run folder (`defend NAME`, study nodes) or in memory (`rs.defend`)."""
