"""Measuring an organism: batched generation and defection rates on held-out prompts."""
