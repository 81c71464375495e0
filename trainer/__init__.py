"""Staged fine-tuning of StyleFinder variants: data adapters, samplers, losses, stages, evaluation, cards."""
