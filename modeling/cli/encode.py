"""`mamba-retrieval encode CORPUS OUT`: embed a whole corpus into Parquet shards with a manifest (modeling/encoding)."""

import sys

from mamba_retrieval.modeling.cli.arguments import non_negative_float, positive_int
from mamba_retrieval.modeling.encoding.encoder import DEFAULT_SHARD_SIZE, NO_PROMPT
from mamba_retrieval.modeling.encoding.shards import PRECISIONS
from mamba_retrieval.modeling.pretrained import DEFAULT_MODEL


def register(subparsers):
    parser = subparsers.add_parser(
        "encode",
        help="embed a whole corpus into Parquet shards (resumable; several devices or Ray)",
        description="Embed every document of CORPUS into OUT: shard-00000.parquet, ... (columns id, embedding) and "
        "manifest.json (model, settings, row counts, per-shard sha256). The corpus is streamed, one shard at a "
        "time, each sorted by length before batching. Rerun the same command after an interruption: complete "
        "shards are kept and the rest is embedded. OUT holds one model's embeddings with one set of settings; "
        "anything else is refused. Empty texts are embedded as empty documents (ids kept).",
    )
    parser.add_argument(
        "corpus",
        help="a JSONL file (_id or id, text, optional title; .gz read as gzip), a BEIR folder, a Parquet file with "
        "those columns, or a folder saved by datasets' save_to_disk",
    )
    parser.add_argument("out", help="output folder: new or empty, or an earlier encode's to resume or check")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"retriever: a Hub folder, a sentence-transformers model or Hub id, or a shipped model ({DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--prompt-name",
        default="document",
        help=f"the model's prompt to prepend (its config_sentence_transformers.json), e.g. document or query; "
        f"{NO_PROMPT}: the texts as they are",
    )
    parser.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default="float32",
        help="stored values: float32, float16, or sentence-transformers' quantize_embeddings int8/uint8 (ranges set "
        "by the first shard) and binary/ubinary (bits packed 8 a byte)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32, help="texts per forward pass")
    parser.add_argument("--max-length", type=positive_int, help="tokens per text (default: the model's)")
    parser.add_argument(
        "--shard-size", type=positive_int, default=DEFAULT_SHARD_SIZE, help="documents per shard (and in memory)"
    )
    parser.add_argument(
        "--devices",
        nargs="+",
        metavar="DEVICE",
        help="devices, one process each through sentence-transformers' multi-process pool: e.g. cuda:0 cuda:1, or "
        "cpu cpu (default: one process, on CUDA if there is one)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run as a Ray Data pipeline on the cluster at ADDRESS (e.g. auto, ray://head:10001), or on a new "
        "local one when no address follows; put it after CORPUS and OUT",
    )
    parser.add_argument("--ray-actors", type=positive_int, default=1, help="with --ray: model copies (actors)")
    parser.add_argument(
        "--ray-gpus-per-actor", type=non_negative_float, default=0.0, help="with --ray: GPUs per actor (1 on GPUs)"
    )
    parser.add_argument(
        "--ray-cpus-per-actor",
        type=non_negative_float,
        default=1.0,
        help="with --ray: CPUs per actor (torch's threads in it); one CPU of the cluster is left for reading",
    )
    parser.set_defaults(func=run)


def run(args):
    from mamba_retrieval.modeling.encoding.encoder import EncodeSettings, encode_corpus
    from mamba_retrieval.modeling.pretrained import locate_model

    if args.ray is not None and args.devices:
        raise ValueError("--devices and --ray do not go together: with --ray, --ray-actors and --ray-gpus-per-actor.")
    settings = EncodeSettings(args.max_length, args.precision, args.prompt_name, args.batch_size, args.shard_size)
    model = locate_model(args.model)
    if args.ray is not None:
        from mamba_retrieval.modeling.encoding.ray_pipeline import encode_corpus_ray

        manifest = encode_corpus_ray(
            args.corpus,
            args.out,
            model,
            settings,
            args.ray or None,
            args.ray_actors,
            args.ray_gpus_per_actor,
            args.ray_cpus_per_actor,
        )
    else:
        manifest = encode_corpus(args.corpus, args.out, model, settings, args.devices)
    print(
        f"{args.out}: {manifest['rows']} embeddings ({manifest['dimension']} dimensions, {manifest['precision']}) in "
        f"{len(manifest['shards'])} shards, {manifest.get('empty_texts', 0)} empty texts",
        file=sys.stderr,
    )
