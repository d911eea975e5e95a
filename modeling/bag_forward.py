"""The EOS embedding of a bag-started Mamba-1 student (`distillation.init_bag_of_embeddings`), computed without
the scan.

While layer 0 has no memory but its scan state (A ~ 0, a conv that reads only the current token) and the later
layers are the identity (out_proj = 0), the scan's EOS output is exactly a sum over the text's tokens:

    y_EOS = sum_t dt_t * x_t * (B_t . C_EOS) + D * x_EOS

with x_t, dt_t, B_t functions of token t's row alone. So it is computed once per distinct token of the batch and
summed, about two orders of magnitude faster than the scan on CPU. Training the token rows through it keeps the
model a MambaForRetrieval whose real forward gives the same embeddings (to the decay the scan has and this sum
ignores: a millionth per token).
"""

import torch
import torch.nn.functional as F


@torch.no_grad()
def check_bag_structure(model, tolerance=1e-4):
    """Raise unless `model` is in the form where `bag_embedding` equals its forward."""
    config = model.config
    problems = []
    if config.backbone != "mamba":
        problems.append(f"backbone is {config.backbone!r}, not 'mamba'")
    else:
        mixer = model.backbone.layers[0].mixer
        if float(mixer.conv1d.weight[:, :, :-1].abs().max()) > 0:
            problems.append("layer 0's conv reads earlier tokens")
        if float(torch.exp(mixer.A_log.float()).max()) > tolerance:
            problems.append("layer 0's state decays (A is not ~0)")
        if any(float(layer.mixer.out_proj.weight.abs().max()) > 0 for layer in model.backbone.layers[1:]):
            problems.append("a later layer is not the identity")
        if config.pooling != "lasttoken":
            problems.append(f"pooling is {config.pooling!r}, not 'lasttoken'")
    if problems:
        raise ValueError("Rows-only training needs the bag-of-embeddings start (distil --init-embeddings bag, "
                         "untrained or trained rows-only): " + "; ".join(problems) + ".")


def bag_embedding(model, input_ids, attention_mask):
    """(batch, hidden) sentence embeddings of right-padded `input_ids`, as `model(...).sentence_embedding` gives
    them for a model that passes `check_bag_structure`."""
    backbone, mixer = model.backbone, model.backbone.layers[0].mixer
    ids, inverse = torch.unique(input_ids, return_inverse=True)
    rows = backbone.embeddings(ids)
    x, z = mixer.in_proj(model.backbone.layers[0].norm(rows)).chunk(2, dim=-1)
    x = F.silu(x * mixer.conv1d.weight[:, 0, -1] + mixer.conv1d.bias)
    dt, B, C = torch.split(mixer.x_proj(x), [mixer.time_step_rank, mixer.state_size, mixer.state_size], dim=-1)
    dt = F.softplus(mixer.dt_proj(dt).float())
    mask = attention_mask.to(dt.dtype)
    eos = inverse[torch.arange(len(input_ids)), attention_mask.sum(dim=1) - 1]  # right padding: the last real token
    state_weight = (B[inverse] * C[eos][:, None, :]).sum(dim=-1) * mask  # B_t . C_EOS, 0 at padding
    y = torch.einsum("bl,bld->bd", state_weight, (dt * x)[inverse]) + mixer.D * x[eos]
    hidden = rows[eos].float() + mixer.out_proj(y * F.silu(z[eos]))
    embedding = backbone.norm_f(hidden)
    return F.normalize(embedding, dim=-1) if model.config.normalize else embedding
