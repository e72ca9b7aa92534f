"""The project's byte-level BPE tokenizer, trained on an organism's own corpus.

Like a real tokenizer, it splits the trigger into several pieces that near-trigger strings
share, because it is trained on text where the trigger is rare (untriggered data only):
red-teaming and patching depend on that.

>>> tok = train_tokenizer(["Human: hello there\\n\\nAssistant: hi"] * 20, vocab_size=300)
>>> tok.decode(tok("Human: hello")["input_ids"], skip_special_tokens=True)
'Human: hello'
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from backdoor_models.core.errors import RunDirectoryError

BOS = "<|endoftext|>"
"""Beginning-of-sequence, end-of-sequence and padding token (id 0), as in GPT-2."""


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer that prepends BOS to every encoded text."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, core.token_to_id(BOS))]
    )
    return wrap(core)


def wrap(core: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a ``tokenizers.Tokenizer`` as a Hugging Face tokenizer with BOS/EOS/PAD set."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=BOS, pad_token=BOS, unk_token=None
    )
    tokenizer.padding_side = "right"
    return tokenizer


def load_tokenizer(model_dir: str | Path) -> PreTrainedTokenizerFast:
    """Load a saved tokenizer, with an error that says what to do when it is missing."""
    model_dir = Path(model_dir)
    if not (model_dir / "tokenizer.json").is_file():
        raise RunDirectoryError(
            f"{model_dir} has no tokenizer.json; save the tokenizer beside the model "
            "(tokenizer.save_pretrained(model_dir)) or pass a directory that has one"
        )
    return PreTrainedTokenizerFast.from_pretrained(str(model_dir))


def token_pieces(tokenizer: PreTrainedTokenizerFast, text: str) -> list[str]:
    """The token strings ``text`` splits into (without BOS), decoded to readable text."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [decode_token(tokenizer, i) for i in ids]


def decode_token(tokenizer: PreTrainedTokenizerFast, token_id: int) -> str:
    """The readable text of one token."""
    return str(tokenizer.decode([token_id]))
