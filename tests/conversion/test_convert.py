"""`mamba-retrieval convert`: every source format, Mamba-1 and Mamba-2, shared and untied encoders, and bad input."""

import json
import textwrap

import pytest
import torch
from helpers import run_fresh_python
from safetensors.torch import load_file
from source_checkpoints import (
    MAMBA_SSM_CONFIGS,
    make_transformers_lm,
    tevatron_state_dict,
    write_mamba_ssm_folder,
    write_spscanner_checkpoint,
    write_tevatron_untied_folders,
)
from transformers import AutoModel

from mamba_retrieval.modeling.cli import main
from mamba_retrieval.modeling.file_hashes import file_sha256 as sha256


def convert(src, out, *args):
    assert main(["convert", str(src), str(out), *args]) == 0
    return json.loads((out / "conversion.json").read_text())


def as_retriever_keys(mamba_ssm_state):
    """What the converted folder must hold: the source tensors, embedding renamed, no LM head."""
    return {
        ("backbone.embeddings.weight" if k == "backbone.embedding.weight" else k): v
        for k, v in mamba_ssm_state.items()
        if k != "lm_head.weight"
    }


def assert_holds(folder, expected, dtype=torch.float32):
    weights = load_file(str(folder / "model.safetensors"))
    assert set(weights) == set(expected)
    for key, tensor in expected.items():
        assert weights[key].dtype == dtype and torch.equal(weights[key], tensor.to(dtype)), key


def assert_verified(report, fmt, encoders):
    assert report["format"] == fmt and report["encoders"] == sorted(encoders)
    parity = report["parity"]["max_abs_diff"]
    assert set(parity) == set(encoders) and all(0 <= diff <= 1e-5 for diff in parity.values())


def assert_nothing_written(out):
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


@pytest.mark.parametrize("backbone", ["mamba", "mamba2"])
def test_mamba_ssm_folder(tmp_path, backbone, capsys):
    source = write_mamba_ssm_folder(tmp_path / "src", backbone)
    report = convert(tmp_path / "src", tmp_path / "out")
    assert_verified(report, "mamba_ssm", ["shared"])
    assert "parity (shared): max |folder - transformers" in capsys.readouterr().out
    assert_holds(tmp_path / "out", as_retriever_keys(source))
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["backbone"] == backbone and config["vocab_size"] == {"mamba": 50280, "mamba2": 50288}[backbone]
    assert report["source_files"] == {
        name: sha256(tmp_path / "src" / name) for name in ("config.json", "pytorch_model.bin")
    }
    assert report["eos_token_id"] == 0 and report["dtype"] == "float32"
    assert report["tokenizer"].startswith("GPT-NeoX-20B")


def test_mamba_ssm_safetensors_with_paper_eos_in_bf16(tmp_path):
    source = write_mamba_ssm_folder(tmp_path / "src", "mamba", safetensors=True)
    report = convert(tmp_path / "src", tmp_path / "out", "--eos-token", "<EOS>", "--dtype", "bf16")
    assert_verified(report, "mamba_ssm", ["shared"])
    assert (report["eos_token"], report["eos_token_id"], report["dtype"]) == ("<EOS>", 50277, "bfloat16")
    assert_holds(tmp_path / "out", as_retriever_keys(source), dtype=torch.bfloat16)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["eos_token_id"] == 50277


@pytest.mark.parametrize("wrapper", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_tevatron_tied_state_dict_keeps_one_encoder(tmp_path, wrapper):
    source = write_mamba_ssm_folder(tmp_path / "unused", "mamba")
    write_mamba_ssm_folder(tmp_path / "src", "mamba", state_dict=tevatron_state_dict(source, wrapper=wrapper))
    report = convert(tmp_path / "src", tmp_path / "out")
    assert_verified(report, "tevatron", ["shared"])
    assert_holds(tmp_path / "out", as_retriever_keys(source))


def test_tevatron_wrapped_mamba_ssm_without_encoder_prefixes(tmp_path):
    source = write_mamba_ssm_folder(tmp_path / "unused", "mamba2")
    write_mamba_ssm_folder(tmp_path / "src", "mamba2", state_dict={f"module.{k}": v for k, v in source.items()})
    assert_verified(convert(tmp_path / "src", tmp_path / "out"), "tevatron", ["shared"])
    assert_holds(tmp_path / "out", as_retriever_keys(source))


def test_mamba_ssm_folder_read_as_tevatron_output(tmp_path):
    """tevatron's tied output is a plain mamba_ssm folder; --format tevatron reads it the same way."""
    source = write_mamba_ssm_folder(tmp_path / "src", "mamba2")
    assert_verified(convert(tmp_path / "src", tmp_path / "out", "--format", "tevatron"), "tevatron", ["shared"])
    assert_holds(tmp_path / "out", as_retriever_keys(source))


@pytest.mark.parametrize("backbone", ["mamba", "mamba2"])
def test_tevatron_untied_state_dict(tmp_path, backbone):
    query = write_mamba_ssm_folder(tmp_path / "q", backbone, seed=1)
    passage = write_mamba_ssm_folder(tmp_path / "p", backbone, seed=2)
    write_mamba_ssm_folder(tmp_path / "src", backbone, state_dict=tevatron_state_dict(query, passage, "module."))
    assert_verified(convert(tmp_path / "src", tmp_path / "out"), "tevatron", ["query", "document"])
    assert_holds(tmp_path / "out" / "query", as_retriever_keys(query))
    assert_holds(tmp_path / "out" / "document", as_retriever_keys(passage))


def test_tevatron_untied_folders_with_wrapped_keys(tmp_path):
    query, passage = write_tevatron_untied_folders(tmp_path / "src", "mamba2")
    write_mamba_ssm_folder(
        tmp_path / "src" / "passage_model", "mamba2", state_dict={f"_orig_mod.{k}": v for k, v in passage.items()}
    )
    assert_verified(convert(tmp_path / "src", tmp_path / "out"), "tevatron", ["query", "document"])
    assert_holds(tmp_path / "out" / "query", as_retriever_keys(query))
    assert_holds(tmp_path / "out" / "document", as_retriever_keys(passage))


@pytest.mark.parametrize("backbone", ["mamba", "mamba2"])
@pytest.mark.parametrize("eos_token, eos_id", [("<|endoftext|>", 0), ("<EOS>", 50277)])
def test_transformers_hf_folder(tmp_path, backbone, eos_token, eos_id):
    lm = make_transformers_lm(tmp_path / "src", backbone)
    report = convert(tmp_path / "src", tmp_path / "out", "--eos-token", eos_token)
    assert_verified(report, "transformers", ["shared"])
    assert report["eos_token_id"] == eos_id
    assert report["tokenizer"] == "tokenizer.json" and "tokenizer.json" in report["source_files"]
    assert_holds(tmp_path / "out", {f"backbone.{k}": v for k, v in lm.backbone.state_dict().items()})


def test_untied_folders_load_offline_in_a_fresh_process(tmp_path):
    """tevatron --untie_encoder output -> one folder: encode_query runs query/, encode_document runs document/."""
    write_tevatron_untied_folders(tmp_path / "src", "mamba")
    report = convert(tmp_path / "src", tmp_path / "out", "--query-prompt", "query: ", "--document-prompt", "passage: ")
    assert_verified(report, "tevatron", ["query", "document"])
    write_mamba_ssm_folder(tmp_path / "shared-src", "mamba2")
    convert(tmp_path / "shared-src", tmp_path / "shared")
    code = textwrap.dedent(f"""
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers import AutoModel, AutoTokenizer

        def embed(folder, text, subfolder=""):
            kwargs = {{"subfolder": subfolder}} if subfolder else {{}}
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True, **kwargs)
            model = AutoModel.from_pretrained(folder, trust_remote_code=True, **kwargs)
            with torch.no_grad():
                return model(**tokenizer([text], return_tensors="pt")).sentence_embedding

        text = "what is a state-space model?"
        out, shared = {str(tmp_path / "out")!r}, {str(tmp_path / "shared")!r}
        router = SentenceTransformer(out, trust_remote_code=True)
        q = torch.as_tensor(router.encode_query([text]))
        d = torch.as_tensor(router.encode_document([text]))
        assert torch.allclose(q, embed(out, "query: " + text, "query"), atol=1e-5)
        assert torch.allclose(d, embed(out, "passage: " + text, "document"), atol=1e-5)
        assert not torch.allclose(embed(out, text, "query"), embed(out, text, "document"), atol=1e-3)
        single = SentenceTransformer(shared, trust_remote_code=True)
        assert torch.allclose(torch.as_tensor(single.encode([text])), embed(shared, text), atol=1e-5)
        print("ok")
    """)
    result = run_fresh_python(code, tmp_path)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


# ---- bad input: a clear error, nothing written ---------------------------------------------------------------------


def convert_fails(src, out, *args, capsys):
    assert main(["convert", str(src), str(out), *args]) == 2
    assert_nothing_written(out)
    return capsys.readouterr().err


def test_missing_key(tmp_path, capsys):
    source = write_mamba_ssm_folder(tmp_path / "unused", "mamba2")
    del source["backbone.layers.1.mixer.dt_bias"]
    write_mamba_ssm_folder(tmp_path / "src", "mamba2", state_dict=source)
    assert "backbone.layers.1.mixer.dt_bias" in convert_fails(tmp_path / "src", tmp_path / "out", capsys=capsys)


def test_extra_key(tmp_path, capsys):
    source = write_mamba_ssm_folder(tmp_path / "unused", "mamba")
    source["backbone.layers.0.mixer.extra.weight"] = torch.zeros(2)
    write_mamba_ssm_folder(tmp_path / "src", "mamba", state_dict=source)
    err = convert_fails(tmp_path / "src", tmp_path / "out", capsys=capsys)
    assert "Unexpected keys: ['backbone.layers.0.mixer.extra.weight']" in err


def test_mismatched_lm_head(tmp_path, capsys):
    source = write_mamba_ssm_folder(tmp_path / "unused", "mamba")
    source["lm_head.weight"] = source["lm_head.weight"] + 1
    write_mamba_ssm_folder(tmp_path / "src", "mamba", state_dict=source)
    assert "lm_head.weight differs" in convert_fails(tmp_path / "src", tmp_path / "out", capsys=capsys)


def test_untied_encoders_of_different_shapes(tmp_path, capsys):
    write_tevatron_untied_folders(tmp_path / "src", "mamba")
    write_mamba_ssm_folder(tmp_path / "src" / "passage_model", "mamba2")
    assert "different models" in convert_fails(tmp_path / "src", tmp_path / "out", capsys=capsys)


def test_truncated_bin(tmp_path, capsys):
    write_mamba_ssm_folder(tmp_path / "src", "mamba")
    path = tmp_path / "src" / "pytorch_model.bin"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    err = convert_fails(tmp_path / "src", tmp_path / "out", "--format", "mamba_ssm", capsys=capsys)
    assert "pytorch_model.bin" in err and "truncated" in err


def test_unknown_ssm_cfg(tmp_path, capsys):
    config = {
        **MAMBA_SSM_CONFIGS["mamba2"],
        "ssm_cfg": {"layer": "Mamba2", "d_state": 8, "headdim": 16, "norm_before_gate": True},
    }
    write_mamba_ssm_folder(tmp_path / "src", "mamba2", config=config)
    assert "ssm_cfg.norm_before_gate" in convert_fails(tmp_path / "src", tmp_path / "out", capsys=capsys)


def test_eos_beyond_the_embedding(tmp_path, capsys):
    config = {**MAMBA_SSM_CONFIGS["mamba"], "pad_vocab_size_multiple": 1}  # 50277 rows: no room for <EOS>
    source = write_mamba_ssm_folder(tmp_path / "unused", "mamba")
    source = {k: v[:50277] if v.shape[0] == 50280 else v for k, v in source.items()}
    write_mamba_ssm_folder(tmp_path / "src", "mamba", state_dict=source, config=config)
    err = convert_fails(tmp_path / "src", tmp_path / "out", "--eos-token", "<EOS>", capsys=capsys)
    assert "50277" in err and "embedding rows" in err


def test_unknown_format(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert "Cannot tell the format" in convert_fails(tmp_path / "src", tmp_path / "out", capsys=capsys)


def test_existing_out_is_kept(tmp_path, capsys):
    write_mamba_ssm_folder(tmp_path / "src", "mamba")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    assert "--force" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]
    convert(tmp_path / "src", tmp_path / "out", "--force")
    assert not (tmp_path / "out" / "mine.txt").exists()
    assert AutoModel.from_pretrained(tmp_path / "out", trust_remote_code=True).config.backbone == "mamba"


def test_parity_check_catches_weights_that_differ(tmp_path):
    """The check itself: the converted folder against other source weights fails the tolerance."""
    from mamba_retrieval.conversion.convert import read_source
    from mamba_retrieval.conversion.parity import compare_with_reference, within_tolerance

    write_mamba_ssm_folder(tmp_path / "src", "mamba2")
    convert(tmp_path / "src", tmp_path / "out")
    source = read_source(tmp_path / "src")
    same = compare_with_reference(tmp_path / "out", source.config, source.encoders["shared"], torch.float32)
    assert within_tolerance(same) and same["max_abs_diff"] <= 1e-5
    changed = dict(source.encoders["shared"])
    changed["backbone.layers.1.mixer.D"] = changed["backbone.layers.1.mixer.D"] + 1e-3
    other = compare_with_reference(tmp_path / "out", source.config, changed, torch.float32)
    assert not within_tolerance(other)


SOURCES = {
    "mamba_ssm": lambda folder: write_mamba_ssm_folder(folder, "mamba2"),
    "tevatron": lambda folder: write_tevatron_untied_folders(folder, "mamba"),
    "transformers": lambda folder: make_transformers_lm(folder, "mamba"),
    "spscanner": write_spscanner_checkpoint,
}


@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_every_format_converts_to_bf16_with_the_one_dtype_table(tmp_path, fmt, capsys):
    """`--dtype bf16` (an alias of the one dtype table) is accepted by every format, the folder holds bfloat16
    weights, and every format writes the same report file with the same core fields."""
    SOURCES[fmt](tmp_path / "src")
    report = convert(tmp_path / "src", tmp_path / "out", "--dtype", "bf16")
    assert report["format"] == fmt and report["dtype"] == "bfloat16" and report["source"] == "src"
    assert {"source_files", "source_dtypes", "parity", "versions"} <= set(report)
    for weights in (tmp_path / "out").rglob("model.safetensors"):
        assert {tensor.dtype for tensor in load_file(str(weights)).values()} == {torch.bfloat16}, weights
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # argparse refuses a dtype outside the table, before any reading
        main(["convert", str(tmp_path / "src"), str(tmp_path / "other"), "--dtype", "bf17"])
    assert "invalid choice: 'bf17'" in capsys.readouterr().err and not (tmp_path / "other").exists()


def test_a_shard_index_naming_a_file_outside_src_is_refused(tmp_path, capsys):
    (tmp_path / "outside.bin").write_bytes(b"not yours")
    source = write_mamba_ssm_folder(tmp_path / "src" / "inner", "mamba")
    (tmp_path / "src" / "inner" / "pytorch_model.bin").unlink()
    index = {"weight_map": {key: "../../outside.bin" for key in source}}
    (tmp_path / "src" / "inner" / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    assert main(["convert", str(tmp_path / "src" / "inner"), str(tmp_path / "out")]) == 2
    assert "'../../outside.bin' points outside" in capsys.readouterr().err
    assert_nothing_written(tmp_path / "out")


def test_convert_never_writes_over_its_own_source_even_with_force(tmp_path, capsys):
    source = write_mamba_ssm_folder(tmp_path / "src", "mamba")
    weights = (tmp_path / "src" / "pytorch_model.bin").read_bytes()
    for out in (tmp_path / "src", tmp_path):  # the source itself, and a folder holding it
        assert main(["convert", str(tmp_path / "src"), str(out), "--force"]) == 2
        assert "would destroy what is being read" in capsys.readouterr().err
    assert (tmp_path / "src" / "pytorch_model.bin").read_bytes() == weights and source


def test_a_broken_config_is_a_one_line_error_naming_it(tmp_path, capsys):
    write_mamba_ssm_folder(tmp_path / "src", "mamba")
    config = json.loads((tmp_path / "src" / "config.json").read_text())
    (tmp_path / "src" / "config.json").write_text(json.dumps({**config, "n_layer": "two"}))
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    assert "n_layer must be a whole number >= 1, got 'two'" in capsys.readouterr().err
    (tmp_path / "src" / "config.json").write_text("{not json")
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    assert f"{tmp_path / 'src' / 'config.json'} is not valid JSON" in capsys.readouterr().err
    assert_nothing_written(tmp_path / "out")


def test_the_format_names_are_the_dispatch_table_in_its_detection_order():
    """`convert --help` lists conversion.format_names (plain data, no torch); the dispatch is convert.FORMATS."""
    from mamba_retrieval.conversion.convert import FORMATS
    from mamba_retrieval.conversion.format_names import FORMAT_DESCRIPTIONS

    assert list(FORMATS) == list(FORMAT_DESCRIPTIONS)
