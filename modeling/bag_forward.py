"""The EOS embedding of a bag-started Mamba-1 student (`distillation.init_bag_of_embeddings`), computed without
the scan.

While layer 0 has no memory but its scan state (A ~ 0, a conv that reads only the current token) and the later
layers are the identity (out_proj = 0), the scan's EOS output is exactly a sum over the text's tokens:

    y_EOS = sum_t dt_t * x_t * (B_t . C_EOS) + D * x_EOS

with x_t, dt_t, B_t functions of token t's row alone. So it is computed once per distinct token of the batch and
summed, about two orders of magnitude faster than the scan on CPU. Training the token rows through it keeps the
model a MambaForRetrieval whose real forward gives the same embeddings, to the decay that the scan has and this
sum leaves out: dt * |A| per token, below 1e-5 at the start (`check_bag_structure` allows |A| <= 1e-6).
"""

import torch
import torch.nn.functional as F

from mamba_retrieval.modeling.modeling_mamba_retrieval import last_token_index


@torch.no_grad()
def check_bag_structure(model, max_decay=1e-6):
    """Raise unless `model` is in the form where `bag_embedding` equals its forward."""
    config = model.config
    problems = []
    if config.backbone != "mamba":
        problems.append(f"backbone is {config.backbone!r}, not 'mamba'")
    else:
        mixer = model.backbone.layers[0].mixer
        if mixer.conv1d.weight.shape[-1] > 1 and float(mixer.conv1d.weight[:, :, :-1].abs().max()) > 0:
            problems.append("layer 0's conv reads earlier tokens")
        if float(torch.exp(mixer.A_log.float()).max()) > max_decay:
            problems.append("layer 0's state decays (|A| above 1e-6)")
        for layer in model.backbone.layers[1:]:
            out_proj = layer.mixer.out_proj
            if float(out_proj.weight.abs().max()) > 0 or (out_proj.bias is not None and bool(out_proj.bias.any())):
                problems.append("a later layer is not the identity (its out_proj is not zero)")
                break
        if config.pooling != "lasttoken":
            problems.append(f"pooling is {config.pooling!r}, not 'lasttoken'")
    if problems:
        raise ValueError(
            "Rows-only training needs the bag-of-embeddings start (distil --init-embeddings bag, "
            "untrained or trained rows-only): " + "; ".join(problems) + "."
        )


def bag_embedding(model, input_ids, attention_mask):
    """(batch, hidden) sentence embeddings of padded `input_ids` (either side), as `model(...).sentence_embedding`
    gives them for a model that passes `check_bag_structure`; the casts follow the forward's."""
    backbone, block = model.backbone, model.backbone.layers[0]
    mixer = block.mixer
    ids, inverse = torch.unique(input_ids, return_inverse=True)
    rows = backbone.embeddings(ids)
    x, z = mixer.in_proj(block.norm(rows)).chunk(2, dim=-1)
    x = x * mixer.conv1d.weight[:, 0, -1]
    x = F.silu(x + mixer.conv1d.bias if mixer.conv1d.bias is not None else x)
    dt, B, C = torch.split(mixer.x_proj(x), [mixer.time_step_rank, mixer.state_size, mixer.state_size], dim=-1)
    dt = F.softplus(mixer.dt_proj(dt).float())  # the scan adds dt's bias and applies softplus in float32
    x, B, C = x.float(), B.float(), C.float()
    eos = inverse[torch.arange(len(input_ids)), last_token_index(attention_mask)]
    state_weight = (B[inverse] * C[eos][:, None, :]).sum(dim=-1) * attention_mask.float()  # B_t . C_EOS; 0 at pads
    y = torch.einsum("bl,bld->bd", state_weight, (dt * x)[inverse]) + mixer.D.float() * x[eos]
    y = (y * F.silu(z[eos].float())).to(rows.dtype)
    residual = rows[eos].float() if block.residual_in_fp32 else rows[eos]
    hidden = residual + mixer.out_proj(y)
    embedding = backbone.norm_f(hidden.to(backbone.norm_f.weight.dtype)).float()
    return F.normalize(embedding, dim=-1) if model.config.normalize else embedding
