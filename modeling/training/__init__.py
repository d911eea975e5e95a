"""Training retrievers: the Mamba Retriever recipe (`retriever`) and CPU distillation from all-MiniLM-L6-v2
(`distillation`, with the recipe of `mamba-retrieval distil` in `distil_recipe`)."""
