"""An independent SPScanner implementation for parity checks: transformers' own `Mamba2Model` + a Linear head.

It reads sentence logits the way the original code does (`binary_head` over every position, then a gather at the
sentence ends), on the same weights, and offers the interface `SentenceScanner` calls (`config`, and
`forward(input_ids, sentence_end_positions)` returning `.logits`), so that whole scans can be compared too.
"""

from types import SimpleNamespace

import torch
from torch import nn
from transformers import Mamba2Config, Mamba2Model


def transformers_mamba2_config(config):
    """transformers' Mamba2Config for the backbone of a MambaScannerConfig."""
    return Mamba2Config(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        state_size=config.state_size,
        expand=config.expand,
        conv_kernel=config.conv_kernel,
        head_dim=config.head_dim,
        num_heads=config.num_heads,
        n_groups=config.n_groups,
        chunk_size=config.chunk_size,
        layer_norm_epsilon=config.layer_norm_epsilon,
        use_bias=config.use_bias,
        use_conv_bias=config.use_conv_bias,
        residual_in_fp32=config.residual_in_fp32,
        tie_word_embeddings=False,
    )


class TransformersScannerReference(nn.Module):
    def __init__(self, config, backbone_state_dict, head_weight, head_bias):
        """backbone_state_dict: transformers `Mamba2Model` keys (`embeddings.weight`, `layers.{i}.*`, `norm_f.weight`),
        loaded strictly; head_weight (1, hidden), head_bias (1,)."""
        super().__init__()
        self.config = config
        self.backbone = Mamba2Model(transformers_mamba2_config(config))
        self.backbone.load_state_dict(backbone_state_dict, strict=True)
        self.binary_head = nn.Linear(config.hidden_size, 1, bias=True)
        self.binary_head.load_state_dict({"weight": head_weight, "bias": head_bias}, strict=True)
        self.to(head_weight.dtype).eval()

    @classmethod
    def from_scanner(cls, model):
        """The reference on the weights of a `MambaForSentenceScoring`."""
        state = model.state_dict()
        backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
        return cls(model.config, backbone, state["binary_head.weight"], state["binary_head.bias"])

    def forward(self, input_ids, sentence_end_positions):
        hidden_states = self.backbone(input_ids=input_ids).last_hidden_state
        all_logits = self.binary_head(hidden_states).squeeze(-1).float()  # every position, as the original
        positions = torch.as_tensor(sentence_end_positions, device=input_ids.device).reshape(len(input_ids), -1)
        logits = all_logits.gather(1, positions.clamp(min=0)).masked_fill(positions < 0, -torch.inf)
        return SimpleNamespace(logits=logits)
