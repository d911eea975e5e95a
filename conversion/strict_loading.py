"""Build a retriever that holds exactly the given weights: the one strict loader every converter uses."""

import torch

from mamba_retrieval.conversion.checkpoint_files import CheckpointKeyError
from mamba_retrieval.modeling.modeling_mamba_retrieval import MambaForRetrieval


def load_into_retriever(config, state_dict):
    """Build a MambaForRetrieval holding exactly `state_dict`: every missing or unexpected key is an error."""
    with torch.device("meta"):
        model = MambaForRetrieval(config)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise CheckpointKeyError(
            f"The checkpoint does not match a {config.backbone} retriever of this config. "
            f"Missing keys: {missing or 'none'}. Unexpected keys: {unexpected or 'none'}."
        )
    wrong_shapes = [
        f"{k}: {tuple(state_dict[k].shape)} != {tuple(p.shape)}"
        for k, p in model.state_dict().items()
        if tuple(state_dict[k].shape) != tuple(p.shape)
    ]
    if wrong_shapes:
        raise ValueError("Tensor shapes do not match the config: " + "; ".join(wrong_shapes))
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()
