"""Retriever models: the remote-code pair, tokenizer set-up and Hub-folder writer."""
