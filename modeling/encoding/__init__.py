"""Embed a whole corpus into Parquet shards with a manifest (`mamba-retrieval encode`): streamed input
(corpus_stream), the shard format others read (shards), the single-machine encoder (encoder) and the same encoder as
a Ray Data pipeline (ray_pipeline)."""
