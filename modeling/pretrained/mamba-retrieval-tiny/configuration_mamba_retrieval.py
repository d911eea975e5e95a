"""Configuration of the mamba-retrieval models (remote code: copied verbatim into every Hub folder)."""

import math

from transformers import PretrainedConfig

BACKBONES = ("mamba", "mamba2")
POOLINGS = ("lasttoken",)


class MambaRetrievalConfig(PretrainedConfig):
    r"""
    A retriever over a Mamba-1 (`backbone="mamba"`) or Mamba-2 (`backbone="mamba2"`) language-model backbone.

    Backbone fields (the names of transformers' `MambaConfig` / `Mamba2Config`):
        vocab_size: rows of the embedding matrix (50280 for Mamba-1, 50288 for Mamba-2 checkpoints).
        hidden_size: model width (`d_model`).
        num_hidden_layers: number of Mamba blocks (`n_layer`).
        state_size: SSM state size `N` (16 for Mamba-1, 128 for Mamba-2 when left as None).
        expand: inner width is `expand * hidden_size`.
        conv_kernel: width of the causal depthwise convolution.
        time_step_rank: rank of the Mamba-1 `dt` projection; "auto" is `ceil(hidden_size / 16)`.
        head_dim: Mamba-2 head size; `num_heads = expand * hidden_size / head_dim`.
        n_groups: Mamba-2 groups sharing B and C.
        chunk_size: Mamba-2 chunk length of the chunked (SSD) scan; changes speed, not results.
        use_bias: bias in `in_proj` and `out_proj`.
        use_conv_bias: bias in the convolution.
        layer_norm_epsilon: epsilon of the RMS norms.
        residual_in_fp32: keep the residual stream in float32.
        initializer_range: std of the embedding initialisation for random models.

    Retrieval fields:
        pooling: "lasttoken": the embedding is the final-layer state (after the final norm) at the last real
            token of each sequence, found from the attention mask. The tokenizer appends the EOS there.
        normalize: L2-normalise the embedding (in float32), so that dot product equals cosine.
    """

    model_type = "mamba_retrieval"

    def __init__(
        self,
        backbone="mamba",
        vocab_size=50280,
        hidden_size=768,
        num_hidden_layers=24,
        state_size=None,
        expand=2,
        conv_kernel=4,
        time_step_rank="auto",
        head_dim=64,
        n_groups=1,
        chunk_size=256,
        use_bias=False,
        use_conv_bias=True,
        layer_norm_epsilon=1e-5,
        residual_in_fp32=True,
        initializer_range=0.02,
        pooling="lasttoken",
        normalize=True,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=False,
        **kwargs,
    ):
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.backbone = backbone
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.state_size = state_size if state_size is not None else (16 if backbone == "mamba" else 128)
        self.expand = expand
        self.conv_kernel = conv_kernel
        self.time_step_rank = math.ceil(hidden_size / 16) if time_step_rank == "auto" else int(time_step_rank)
        self.head_dim = head_dim
        self.n_groups = n_groups
        self.chunk_size = chunk_size
        self.use_bias = use_bias
        self.use_conv_bias = use_conv_bias
        self.layer_norm_epsilon = layer_norm_epsilon
        self.residual_in_fp32 = residual_in_fp32
        self.initializer_range = initializer_range
        self.pooling = pooling
        self.normalize = normalize
        if backbone == "mamba2":
            if self.intermediate_size % head_dim:
                raise ValueError(
                    f"expand * hidden_size ({self.intermediate_size}) must be a multiple of head_dim ({head_dim})"
                )
            if (self.intermediate_size // head_dim) % n_groups:
                raise ValueError(
                    f"the number of heads ({self.intermediate_size // head_dim}) must be a multiple "
                    f"of n_groups ({n_groups})"
                )
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )

    @property
    def intermediate_size(self):
        """Inner width of each mixer (`expand * hidden_size`)."""
        return int(self.expand * self.hidden_size)

    @property
    def num_heads(self):
        """Mamba-2 heads (`expand * hidden_size / head_dim`)."""
        return self.intermediate_size // self.head_dim


class MambaScannerConfig(MambaRetrievalConfig):
    r"""
    SPScanner: one causal Mamba-2 pass over `question + question_suffix + document` scores every sentence unit.

    Backbone fields are those of `MambaRetrievalConfig` (the backbone is always Mamba-2). Scanner fields:
        window_size: document tokens per window; longer documents are scanned in windows, each prefixed with the
            question (120,000 in the published pipeline).
        window_stride: document tokens between window starts; None means half the window (50% overlap).
        question_suffix: appended to the stripped question before it is tokenized ("\n", as in training).
        min_unit_tokens: consecutive pieces are merged until each sentence unit has at least this many tokens.
        max_piece_words: pieces longer than this are split at newlines, then every `max_piece_words` words.
        max_piece_chars: pieces this long or longer (markup without spaces, tables) are dropped.
    """

    model_type = "mamba_scanner"

    def __init__(
        self,
        window_size=120_000,
        window_stride=None,
        question_suffix="\n",
        min_unit_tokens=20,
        max_piece_words=50,
        max_piece_chars=1000,
        backbone="mamba2",
        vocab_size=50288,
        **kwargs,
    ):
        if backbone != "mamba2":
            raise ValueError(f"A scanner has a Mamba-2 backbone; got backbone={backbone!r}.")
        if window_size < 2:
            raise ValueError(f"window_size must be at least 2 tokens, got {window_size}.")
        stride = window_size // 2 if window_stride is None else window_stride
        if not 0 < stride <= window_size:
            raise ValueError(f"window_stride must lie in (0, window_size={window_size}], got {window_stride}.")
        self.window_size = window_size
        self.window_stride = window_stride
        self.question_suffix = question_suffix
        self.min_unit_tokens = min_unit_tokens
        self.max_piece_words = max_piece_words
        self.max_piece_chars = max_piece_chars
        super().__init__(backbone=backbone, vocab_size=vocab_size, **kwargs)

    @property
    def stride(self):
        """Document tokens between window starts (half the window unless `window_stride` is set)."""
        return self.window_size // 2 if self.window_stride is None else self.window_stride
