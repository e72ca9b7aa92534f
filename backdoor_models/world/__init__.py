"""The organisms' world: tasks, triggers, requests, the training mix, chat formats, tokenizer, importers."""
