"""The model a server serves: its names, the prompt each name applies, token counts, and encoding.

A folder `NAME` is served under three names, so that any OpenAI client, which sends nothing but a model name, can
ask for queries or documents:

- `NAME`: `SentenceTransformer.encode` (the folder's default prompt, if it names one);
- `NAME-query`: `encode_query` (the folder's `query` prompt);
- `NAME-document`: `encode_document` (the folder's `document` prompt).
"""

import contextlib
import copy
import threading

from mamba_retrieval.modeling.search.searcher import load_encoder, longest_token

KINDS = (None, "query", "document")  # None: plain encode


class ServedModel:
    """One SentenceTransformer and what the server needs around it. `encode` is called from the batcher's single
    worker thread only. `count_tokens` has tokenizers of its own (a fast tokenizer shared between threads fails with
    "Already borrowed" while another thread changes its padding): one for short requests, counted on the event loop
    (cheaper than a hop to a thread), and one behind a lock for long ones, counted in threads."""

    def __init__(self, model, name, encoder=None):
        self.name = name
        self.encoder = encoder if encoder is not None else load_encoder(model)
        self.max_seq_length = self.encoder.max_seq_length
        self._counter = copy.deepcopy(self.encoder.tokenizer)
        self._count_lock = threading.Lock()
        self._loop_counter = copy.deepcopy(self.encoder.tokenizer)
        self._longest_token = longest_token(self.encoder.tokenizer)  # (cached per tokenizer object: not a copy)
        self.prompts = {kind: self._prompt(kind) for kind in KINDS}
        self.names = {name: None, f"{name}-query": "query", f"{name}-document": "document"}  # served name -> kind
        # one text encoded before the first request: it gives the embedding size and compiles what compiles once
        self.dimension = self.encode(None, ["warm-up"], 1).shape[1]

    def _prompt(self, kind):
        """The prompt string encode / encode_query / encode_document would apply (sentence-transformers' rule: the
        kind's own prompt if the folder has one, else the default prompt)."""
        prompts = self.encoder.prompts
        prompt_name = kind if kind in prompts else self.encoder.default_prompt_name
        return prompts.get(prompt_name) if prompt_name else None

    def count_tokens(self, texts, kind, limit, on_event_loop=False):
        """Tokens the model reads for each text (prompt and end-of-text token included). A text too long to hold
        `limit` tokens or fewer is not tokenized: its count is its lower bound, len / the longest token's length.
        `on_event_loop`: called from the event loop's thread (short requests only), else from any other thread."""
        prompt = self.prompts[kind] or ""
        counts = [None] * len(texts)
        short = []
        for position, text in enumerate(texts):
            if len(prompt) + len(text) > limit * self._longest_token:
                counts[position] = -(-(len(prompt) + len(text)) // self._longest_token)
            else:
                short.append(position)
        if short:
            counter = self._loop_counter if on_event_loop else self._counter
            with contextlib.nullcontext() if on_event_loop else self._count_lock:
                encoded = counter([prompt + texts[p] for p in short], return_attention_mask=False)
            for position, ids in zip(short, encoded["input_ids"]):
                counts[position] = len(ids)
        return counts

    def encode(self, kind, texts, batch_size):
        """L2-normalised float32 embeddings (numpy), as the sentence-transformers method of `kind` gives them."""
        method = {
            None: self.encoder.encode,
            "query": self.encoder.encode_query,
            "document": self.encoder.encode_document,
        }[kind]
        return method(
            texts,
            prompt=self.prompts[kind],
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
