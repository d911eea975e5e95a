"""`mamba-retrieval train-scanner MODEL OUT --data DATA`: SPScanner's training recipe."""

from pathlib import Path

from mamba_retrieval.modeling.cli.arguments import positive_int
from mamba_retrieval.modeling.pretrained import locate_model


def register(subparsers):
    parser = subparsers.add_parser(
        "train-scanner",
        help="fine-tune an SPScanner folder on JSONL training data",
        description="Train an SPScanner Hub folder on JSONL examples (input_ids, sentence_indices, "
        "sentence_labels) with the paper's recipe, and write the result as a new folder.",
    )
    parser.add_argument("model", help="SPScanner Hub folder to start from")
    parser.add_argument("out", help="output folder (must not exist or be empty, unless --force)")
    parser.add_argument("--data", required=True, help="training JSONL")
    parser.add_argument("--epochs", type=positive_int, default=1, help="passes over the data")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="examples per forward pass")
    parser.add_argument(
        "--gradient-accumulation-steps", type=positive_int, default=1, help="forward passes per optimizer step"
    )
    parser.add_argument("--peak-lr", type=float, default=1e-4, help="learning rate after warm-up (the paper's)")
    parser.add_argument("--min-lr", type=float, default=1e-5, help="learning rate at the end of the cosine decay")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data order")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run)


def run(args):
    import torch
    from transformers import AutoModel

    from mamba_retrieval.modeling.hub_folder import check_output_dir
    from mamba_retrieval.modeling.scanner.sentence_scanner import build_scanner_tokenizer, write_scanner_folder
    from mamba_retrieval.modeling.scanner.training import read_training_jsonl, train_scanner

    source = locate_model(args.model, "MODEL")
    check_output_dir(args.out, args.force, sources=[source])
    examples = read_training_jsonl(args.data)
    model = AutoModel.from_pretrained(source, trust_remote_code=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    losses = train_scanner(
        model.to(device),
        examples,
        epochs=args.epochs,
        batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        peak_lr=args.peak_lr,
        min_lr=args.min_lr,
        seed=args.seed,
        log_every=10,
    )
    tokenizer_file = Path(source) / "tokenizer.json"
    tokenizer = build_scanner_tokenizer(tokenizer_file) if tokenizer_file.is_file() else None
    write_scanner_folder(model.cpu(), args.out, tokenizer, force=args.force)
    print(f"{len(losses)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}; wrote {args.out}")
