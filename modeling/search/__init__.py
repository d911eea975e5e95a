"""Semantic search over your own files: the documents of a source, a saved incremental index, and the searcher."""
