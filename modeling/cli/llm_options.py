"""The LLM endpoint options that `synth` and `answer` share."""

from mamba_retrieval.modeling.scanner.llm_client import DEFAULT_BASE_URL, LLMClient


def add_llm_arguments(parser):
    """The LLM options shared by `synth` and `answer`."""
    group = parser.add_argument_group("LLM endpoint (any OpenAI-compatible chat-completions API)")
    group.add_argument("--llm-model", help="model name (default: $OPENAI_MODEL)")
    group.add_argument("--llm-base-url", help=f"base URL (default: $OPENAI_BASE_URL or {DEFAULT_BASE_URL})")
    group.add_argument("--llm-concurrency", type=int, default=8, help="requests in flight at once")
    group.add_argument("--llm-timeout", type=float, default=240.0, help="seconds per request")
    group.add_argument("--llm-max-retries", type=int, default=5, help="retries of 429 / 5xx / timeouts, with back-off")
    group.add_argument("--llm-max-tokens", type=int, default=2000, help="max_tokens of each completion")
    group.add_argument("--llm-temperature", type=float, default=0.0, help="sampling temperature (0: the likeliest)")
    group.add_argument("--llm-price-input", type=float, help="USD per million prompt tokens (to report the cost)")
    group.add_argument("--llm-price-output", type=float, help="USD per million completion tokens")
    group.add_argument(
        "--llm-cache-dir",
        help="response cache (default: OUT/llm_cache); the API key is read from "
        "$OPENAI_API_KEY, never from the command line",
    )


def client_from_args(args, default_cache_dir):
    return LLMClient(
        args.llm_model,
        args.llm_base_url,
        cache_dir=args.llm_cache_dir or default_cache_dir,
        concurrency=args.llm_concurrency,
        timeout=args.llm_timeout,
        max_retries=args.llm_max_retries,
        temperature=args.llm_temperature,
        max_tokens=args.llm_max_tokens,
        price_input=args.llm_price_input,
        price_output=args.llm_price_output,
    )
