"""SPScanner: sentence scoring of question + long document (`SentenceScanner`), segmentation into sentence units,
the training recipe, and the link-based synthetic-data pipeline with its LLM client."""

from mamba_retrieval.modeling.scanner.sentence_scanner import ScanResult, SentenceScanner

__all__ = ["ScanResult", "SentenceScanner"]
