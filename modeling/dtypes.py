"""The one table of weight dtypes that every command and converter accepts. The table holds names, not torch
objects, so the CLI can offer them in `--help` without importing torch (seconds)."""

DTYPES = {  # accepted name -> torch's name
    "float32": "float32",
    "bfloat16": "bfloat16",
    "float16": "float16",
    "fp32": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
}


def torch_dtype(name):
    """The torch dtype named `name` (a full name or a short alias); None stays None (keep the source's)."""
    import torch  # here, not at the top: see the module docstring

    if name is None or isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"Unknown dtype {name!r}; choose one of {', '.join(DTYPES)}.")
    return getattr(torch, DTYPES[name])


def dtype_name(dtype):
    return str(dtype).removeprefix("torch.")
