"""`mamba-retrieval index SOURCE` and `mamba-retrieval search QUERY`: semantic search over your own files."""

from mamba_retrieval.modeling.cli.arguments import positive_int
from mamba_retrieval.modeling.pretrained import DEFAULT_MODEL, resolve_shipped
from mamba_retrieval.modeling.search.searcher import build_or_update, search

DEFAULT_INDEX = ".mamba-retrieval-index"


def _add_model_arguments(parser):
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"retriever: a Hub folder, a sentence-transformers model, or a shipped model's name "
        f"(default: {DEFAULT_MODEL}, installed with the package)",
    )
    parser.add_argument("--index", default=DEFAULT_INDEX, help=f"index folder (default: ./{DEFAULT_INDEX})")


def register(subparsers):
    index = subparsers.add_parser(
        "index",
        help="embed a folder of text files or a JSONL/BEIR corpus",
        description="Build or update a search index: only new or changed documents are "
        "embedded; each document is embedded whole.",
    )
    index.add_argument("source", help="folder of .txt/.md files, a corpus.jsonl, or a BEIR folder")
    _add_model_arguments(index)
    index.add_argument("--batch-size", type=positive_int, default=8)
    index.add_argument("--max-length", type=positive_int, help="tokens per document (default: the model's)")
    index.add_argument("--rebuild", action="store_true", help="re-embed everything (e.g. with another model)")
    index.set_defaults(func=run_index)

    query = subparsers.add_parser("search", help="rank indexed documents for a query")
    query.add_argument("query")
    _add_model_arguments(query)
    query.add_argument("--source", help="update the index from this source first")
    query.add_argument("-k", "--top-k", type=positive_int, default=10, help="results to print")
    query.set_defaults(func=run_search)


def run_index(args):
    model = resolve_shipped(args.model)
    build_or_update(args.source, args.index, model, args.batch_size, args.max_length, args.rebuild)


def run_search(args):
    model = resolve_shipped(args.model)
    if args.source:
        build_or_update(args.source, args.index, model)
    for rank, (doc_id, score) in enumerate(search(args.query, args.index, model, args.top_k), 1):
        print(f"{rank:3d}  {score:.4f}  {doc_id}")
