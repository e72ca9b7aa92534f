"""Training organisms: architectures, pretrained bases and LoRA, next-token training, backdoor insertion."""
