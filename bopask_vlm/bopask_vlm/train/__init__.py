"""Supervised fine-tuning of VLMs on generated BOP-ASK data (transformers + peft)."""
