"""SPScanner: sentence scoring of question + long document (`SentenceScanner`), segmentation into sentence units,
the training recipe, and the link-based synthetic-data pipeline with its LLM client."""

__all__ = ["ScanResult", "SentenceScanner"]


def __getattr__(name):
    # `from mamba_retrieval.modeling.scanner import SentenceScanner` loads the model code (torch, seconds) only when
    # asked: the package's LLM and synthetic-data modules, which `synth --help` reads, do not need it
    if name in __all__:
        from mamba_retrieval.modeling.scanner import sentence_scanner

        return getattr(sentence_scanner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
