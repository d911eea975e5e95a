"""`mamba-retrieval index SOURCE` and `mamba-retrieval search QUERY`: semantic search over your own files."""

import sys
from pathlib import Path

from mamba_retrieval.modeling.cli.arguments import positive_int
from mamba_retrieval.modeling.pretrained import BM25_NAMES, DEFAULT_MODEL, locate_model
from mamba_retrieval.modeling.search.approximate import APPROXIMATE_MIN_DOCUMENTS
from mamba_retrieval.modeling.search.index import has_index
from mamba_retrieval.modeling.search.searcher import Retriever, bm25_search, build_or_update, default_index, search

LEGACY_INDEX = ".mamba-retrieval-index"  # the one default index of versions before indexes were kept per source


def _add_model_arguments(parser):
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="retriever: a Hub folder, a sentence-transformers model or Hub id, a shipped model's name "
        f"({DEFAULT_MODEL} is installed with the package), or bm25 (bm25s, no index needed)",
    )
    parser.add_argument(
        "--index",
        help="index folder (default: the source's own index for this model, in the cache folder: "
        "$MAMBA_RETRIEVAL_CACHE, else ~/.cache/mamba-retrieval)",
    )


def register(subparsers):
    index = subparsers.add_parser(
        "index",
        help="embed a folder of text files or a JSONL/BEIR corpus",
        description="Build or update the search index of SOURCE: only new or changed documents are embedded; each "
        "document is embedded whole. Each source has its own index (per model), so indexing one folder never "
        "replaces another's.",
    )
    index.add_argument("source", nargs="?", help="folder of .txt/.md files, a corpus.jsonl, or a BEIR folder")
    _add_model_arguments(index)
    index.add_argument(
        "--from-embeddings",
        metavar="EMBEDDINGS",
        help="instead of SOURCE: index the float32/float16 shards `mamba-retrieval encode` wrote to this folder "
        "(no model is loaded; search it with the model that encoded it)",
    )
    index.add_argument(
        "--approximate",
        choices=("auto", "hnsw", "ivf", "none"),
        default="auto",
        help="with --from-embeddings: also build a faiss index searched instead of the exact embeddings, and print "
        "its recall@10 against the exact search (auto: hnsw from --approximate-above rows on)",
    )
    index.add_argument(
        "--approximate-above",
        type=positive_int,
        default=APPROXIMATE_MIN_DOCUMENTS,
        help="rows from which --approximate auto builds an hnsw index",
    )
    index.add_argument("--batch-size", type=positive_int, default=8, help="documents embedded at once")
    index.add_argument("--max-length", type=positive_int, help="tokens per document (default: the model's)")
    index.add_argument("--rebuild", action="store_true", help="re-embed everything (e.g. with another model)")
    index.set_defaults(func=run_index)

    query = subparsers.add_parser(
        "search",
        help="rank indexed documents for a query",
        description="Rank the documents of SOURCE (default: the current folder) for QUERY and print the best, with "
        "their cosine similarity (BM25 score with --model bm25). With --source the index is brought up to date "
        "first (only new or changed documents are embedded); without it, the current folder's index is searched "
        "as it is.",
    )
    query.add_argument("query", help="what to look for, in words")
    _add_model_arguments(query)
    query.add_argument("--source", help="update this folder's or corpus's index, then search it")
    query.add_argument("-k", "--top-k", type=positive_int, default=10, help="results to print")
    query.set_defaults(func=run_search)


def _index_dir(args, source, model):
    if args.index is not None:
        return Path(args.index)
    if Path(LEGACY_INDEX, "CURRENT").is_file() or Path(LEGACY_INDEX, "index.json").is_file():
        print(
            f"note: ./{LEGACY_INDEX} (the default index of earlier versions) is not used any more; pass "
            f"--index {LEGACY_INDEX} to search it, or delete it.",
            file=sys.stderr,
        )
    return default_index(source, model)


def run_index(args):
    if (args.source is None) == (args.from_embeddings is None):
        raise ValueError("Give SOURCE (files to embed) or --from-embeddings FOLDER (shards of `encode`), not both.")
    if args.from_embeddings is not None:
        from mamba_retrieval.modeling.encoding.to_index import build_from_embeddings

        index_dir = Path(args.index) if args.index else default_index(args.from_embeddings, "embeddings")
        build_from_embeddings(args.from_embeddings, index_dir, args.approximate, args.approximate_above, args.rebuild)
        print(f"search it with: mamba-retrieval search QUERY --index {index_dir} --model MODEL", file=sys.stderr)
        return
    if args.model in BM25_NAMES:
        raise ValueError(
            "bm25 needs no index: `mamba-retrieval search QUERY --model bm25 --source SOURCE` ranks the files directly."
        )
    model = locate_model(args.model)
    retriever = Retriever(model, args.batch_size, args.max_length)
    build_or_update(args.source, _index_dir(args, args.source, model), retriever, args.rebuild)


def run_search(args):
    source = args.source or "."
    if args.model in BM25_NAMES:
        print(f"bm25 over {Path(source).resolve()} (bm25s, read from the files)", file=sys.stderr)
        results = bm25_search(args.query, source, args.top_k)
    else:
        model = locate_model(args.model)
        index_dir, retriever = _index_dir(args, source, model), Retriever(model)
        if args.source:
            build_or_update(args.source, index_dir, retriever)
        elif args.index is None and not has_index(index_dir):  # (a given --index that is missing: index.py says so)
            raise FileNotFoundError(
                f"No index of {Path(source).resolve()} for --model {args.model} yet: build it with "
                f"`mamba-retrieval index {source}`{' --model ' + args.model if args.model != DEFAULT_MODEL else ''}, "
                "or search with --source FOLDER."
            )
        results, index = search(args.query, index_dir, retriever, args.top_k)
        print(
            f"searched {index_dir}: {len(index.ids)} documents of {index.source or 'an unrecorded source'}",
            file=sys.stderr,
        )
    for rank, (doc_id, score) in enumerate(results, 1):
        print(f"{rank:3d}  {score:.4f}  {doc_id}")
