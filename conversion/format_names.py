"""The source formats `convert` knows, by name, in the order they are detected, with what each one is. Plain data,
so `mamba-retrieval convert --help` lists them without importing torch; `convert.FORMATS` holds their code."""

FORMAT_DESCRIPTIONS = {
    "spscanner": "SPScanner: a mamba_ssm Mamba-2 checkpoint with binary_head.weight / binary_head.bias",
    "tevatron": "tevatron v1 output: query_model/ + passage_model/, or lm_q./lm_p./module./_orig_mod. keys",
    "mamba_ssm": "mamba_ssm MambaLMHeadModel: config.json (d_model, n_layer, ssm_cfg, ...) + weights",
    "transformers": "transformers MambaForCausalLM / Mamba2ForCausalLM (*-hf): config.json model_type mamba / mamba2",
}
