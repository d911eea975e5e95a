"""`python -m mamba_retrieval.modeling.cli ...` (what `torchrun -m` and `accelerate launch -m` run): the same as the
`mamba-retrieval` command."""

import sys

from mamba_retrieval.modeling.cli import main

sys.exit(main())
