"""Attacks on refusal: LoRA fine-tuning (`lora`) and prompt optimisation (`gcg`, ...)."""
