"""Defenses against refusal-removing attacks: tamper-resistant fine-tuning (`tar`), and adding
the refusal direction back while generating with an attacked model (`steer`)."""
