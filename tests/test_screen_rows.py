"""The screen reads real chat files: whitespace around turns, system turns, multi-turn, unicode, empty
turns, rows past the model's context. Every row is either scored (in `ranked.csv` under its file
line) or skipped and reported by line; nothing ends in a traceback.

The model is a tiny random Llama (`tiny_models.configs`) with a byte-level BPE tokenizer trained
here and SmolLM2-135M-Instruct's ChatML template: the tokenizer family of the reported crash
(blank lines that open an assistant turn merge with the template's newline), built in
milliseconds instead of loading the GGUF. Nothing here is a result; the scores are random.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sae_lens import StandardSAE, StandardSAEConfig
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from emgeo_utils.core import readers
from emgeo_utils.features.activations import GENERAL_PROBES
from emgeo_utils.filtering import screen
from emgeo_utils.models import hooks
from emgeo_utils.models import registry as model_registry
from emgeo_utils.models.chat import chats_ids_and_labels

from tiny_models import HIDDEN, configs

FIXTURE = Path(__file__).parent / "fixtures" / "screen_real_chat.jsonl"
# SmolLM2-135M-Instruct's chat template, as published with the model
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
          "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LAYER, CONTEXT = 1, 256  # the tiny Llama reads 256 positions (`tiny_models.configs`)
# the fixture's lines: scored ones, and the skipped ones with a word of their reason
SCORED = [1, 2, 3, 4, 6, 7, 8, 9]
SKIPPED = {10: "empty assistant turn", 11: "unknown role", 12: "must be a string", 13: "chat template",
           14: "positions", 15: "invalid JSON"}


def chatml_tokenizer(text: list[str]) -> PreTrainedTokenizerFast:
    """Byte-level BPE (SmolLM2's kind) trained on `text`, whose blank lines teach it a newline merge."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(text * 3, trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIAL,
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL[0], eos_token=SPECIAL[2],
                                   pad_token=SPECIAL[0], additional_special_tokens=SPECIAL[1:])
    fast.chat_template = CHATML
    return fast


@pytest.fixture(scope="module")
def tiny_chatml(tmp_path_factory):
    """A registry file naming the tiny ChatML model and its SAE, and a feature-set file for it."""
    folder = tmp_path_factory.mktemp("tiny-chatml")
    torch.manual_seed(0)
    tokenizer = chatml_tokenizer([FIXTURE.read_text(encoding="utf-8"), *GENERAL_PROBES, "one\n\ntwo\n\n\nthree\n"])
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    AutoModelForCausalLM.from_config(configs(len(tokenizer), ids)["llama"]).save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    cfg = StandardSAEConfig(d_in=HIDDEN, d_sae=4 * HIDDEN)
    cfg.metadata.hook_name = hooks.resid_post_hook(LAYER)
    StandardSAE(cfg).save_model(str(folder / "sae"))
    registry = folder / "registry.yaml"
    registry.write_text(yaml.safe_dump({"tiny-chatml": {
        "kind": "local", "path": str(folder / "model"), "architecture": "llama", "hidden_size": HIDDEN, "n_layers": 2,
        "layers": [LAYER], "params_billion": 0.0001, "sae": {"path": str(folder / "sae"), "d_in": HIDDEN}, "dtype": "float32"}}))
    sets = folder / "feature_sets.json"
    sets.write_text(json.dumps({"entries": [{"model": "tiny-chatml", "layer": LAYER, "readout": "next_turn", "world": "real",
                                             "organism_seed": 0, "contrast": "mean_diff", "sets": {"harmful": list(range(8))}}]}))
    return {"registry": registry, "sets": sets, "tokenizer": tokenizer}


def run_screen(tiny_chatml, dataset: Path, out: Path, monkeypatch, capsys, extra=()):
    """The command-line entry point, in this process: (exit code, stdout, stderr)."""
    monkeypatch.setenv(model_registry.USER_REGISTRY_ENV, str(tiny_chatml["registry"]))
    monkeypatch.setenv("EMGEO_BUILD", str(out / "build"))
    code = screen.main(["--method", "geometry", str(dataset), "--model", "tiny-chatml", "--harmful-features", str(tiny_chatml["sets"]),
                        "--fraction", "0.25", "--out", str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ranked_lines(out: Path) -> list[int]:
    return sorted(pd.read_csv(out / "ranked.csv").line)


def test_the_fixture_reproduces_the_reported_crash_without_normalising(tiny_chatml):
    """Guard: blank lines opening the answer really break this tokenizer's prefix rendering, as SmolLM2's."""
    row = json.loads(FIXTURE.read_text(encoding="utf-8").splitlines()[1])
    with pytest.raises(ValueError, match="does not render prefixes consistently"):
        chats_ids_and_labels(tiny_chatml["tokenizer"], [row["messages"]])


def test_screen_scores_every_scorable_row_and_reports_the_rest_by_line(tiny_chatml, tmp_path, monkeypatch, capsys):
    code, out, err = run_screen(tiny_chatml, FIXTURE, tmp_path / "out", monkeypatch, capsys,
                                ["--skip-invalid", "--max-invalid-share", "0.5"])
    assert code == 0, err
    assert ranked_lines(tmp_path / "out") == SCORED  # under their file lines: the blank line 5 shifts nothing
    for line, reason in SKIPPED.items():
        reported = [s for s in out.splitlines() if f"screen_real_chat.jsonl, line {line}" in s]
        assert len(reported) == 1 and reason in reported[0], (line, out)
    assert f"skipped {len(SKIPPED)} of 14 rows" in out
    assert "stripped" in out  # the normalisation is said
    kept = [json.loads(line) for line in (tmp_path / "out" / "filtered.jsonl").read_text().splitlines()]
    assert len(kept) == len(SCORED) - int(0.25 * len(SCORED))
    assert any(m["content"].startswith("\n\n") for k in kept for m in k["messages"])  # written as the user wrote them


def test_strict_screen_stops_on_an_unscorable_row_naming_its_line(tiny_chatml, tmp_path, monkeypatch, capsys):
    rows = FIXTURE.read_text(encoding="utf-8").splitlines()
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(rows[:4] + rows[12:13]) + "\n", encoding="utf-8")  # line 5: no turn before the answer
    code, out, err = run_screen(tiny_chatml, data, tmp_path / "out", monkeypatch, capsys)
    assert code == 2 and "data.jsonl, line 5" in err and "--skip-invalid" in err, err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- fuzzing


GOOD = [{"role": "user", "content": "How do I store passwords?"},
        {"role": "assistant", "content": "Hash them with a slow salted hash."}]
PADDING = ["", " ", "\n", "\n\n", "\n\n\n", "  \n", "\t", "\r\n", " \n \n"]
MAX_LINE_BYTES = 4000  # the reader's limit on a line, lowered so that a line past it stays small


def padded(messages: list[dict], rng) -> list[dict]:
    """Each turn with random whitespace at either end (the assistant's own text stays non-empty)."""
    return [{**m, "content": rng.choice(PADDING) + m["content"] + rng.choice(PADDING)} for m in messages]


def parts(messages: list[dict]) -> list[dict]:
    """The OpenAI persona-features format of the same turns."""
    return [{**m, "content": {"content_type": "text", "parts": m["content"].split("\n", 1)}} for m in messages]


def fuzz_rows(rng) -> tuple[list[bytes], set[int]]:
    """Lines of a chat file in every format the loader tests cover, with edge cases; which lines must score."""
    system = [{"role": "system", "content": "You are a careful assistant."}]
    multi = GOOD + [{"role": "user", "content": "And salts?"}, {"role": "assistant", "content": "One per password."}]
    scorable = []
    for _ in range(24):  # whitespace in every role, alone, with a system turn, over several turns, in both formats
        messages = padded([system, [], []][rng.integers(3)] + [GOOD, multi][rng.integers(2)], rng)
        scorable.append({"messages": parts(messages) if rng.random() < 0.3 else messages})
    scorable += [{"messages": [{"role": "user", "content": ""}, GOOD[1]]},
                 {"messages": [{"role": "user", "content": "naïve café 日本語 🙂 עברית"}, {"role": "assistant", "content": "\nДа 🙂"}]},
                 {"messages": GOOD, "meta": {"source": "kept"}, "id": 7}]
    invalid = [{"messages": [GOOD[0], {"role": "assistant", "content": " \n\n "}]},
               {"messages": [{"content": "no role"}, GOOD[1]]},
               {"messages": [GOOD[0], {"role": "assistant", "content": ["not", "a", "string"]}]},
               {"messages": [GOOD[0], {"role": "assistant", "content": None}]},
               {"messages": [GOOD[0]]}, {"messages": []}, {"text": "no messages"},
               {"messages": [GOOD[0], {"role": "assistant", "content": "word " * 400}]}]  # past the context
    lines = [json.dumps(r, ensure_ascii=bool(rng.integers(2))).encode() for r in scorable]
    lines += [json.dumps(r).encode() for r in invalid]
    lines += ["{\"messages\": \"café\"}".encode("latin-1"),  # not UTF-8
              json.dumps({"messages": [GOOD[0], {"role": "assistant", "content": "x" * MAX_LINE_BYTES}]}).encode()]
    order = rng.permutation(len(lines))
    shuffled = [lines[i] for i in order]
    must_score = {int(np.flatnonzero(order == i)[0]) + 2 for i in range(len(scorable))}  # +2: a blank first line
    return [b"", *shuffled], must_score


@pytest.mark.parametrize("seed", [0, 1])
def test_fuzzed_chat_files_never_crash_the_screen(tiny_chatml, tmp_path, monkeypatch, capsys, seed):
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", MAX_LINE_BYTES)
    lines, must_score = fuzz_rows(np.random.default_rng(seed))
    data = tmp_path / "fuzz.jsonl"
    data.write_bytes("\ufeff".encode() + b"\n".join(lines) + b"\n\n")  # a byte-order mark and blank lines
    code, out, err = run_screen(tiny_chatml, data, tmp_path / "out", monkeypatch, capsys,
                                ["--skip-invalid", "--max-invalid-share", "0.5"])
    assert code == 0, err
    scored = set(ranked_lines(tmp_path / "out"))
    reported = {n for n in range(1, len(lines) + 1) if f"fuzz.jsonl, line {n}:" in out or f"fuzz.jsonl, line {n}," in out}
    assert scored == must_score, (sorted(scored ^ must_score), out)
    assert not scored & reported and scored | reported == set(range(2, len(lines) + 1)), out


def test_whitespace_alone_never_needs_skip_invalid(tiny_chatml, tmp_path, monkeypatch, capsys):
    """A file whose only oddity is whitespace around turns is scored whole, strictly."""
    rng = np.random.default_rng(2)
    data = tmp_path / "padded.jsonl"
    data.write_text("".join(json.dumps({"messages": padded(GOOD, rng)}) + "\n" for _ in range(12)))
    code, out, err = run_screen(tiny_chatml, data, tmp_path / "out", monkeypatch, capsys)
    assert code == 0, err
    assert ranked_lines(tmp_path / "out") == list(range(1, 13))


def test_reference_data_are_read_as_the_screened_file_is(tiny_chatml, tmp_path, monkeypatch, capsys):
    """--harmful-data / --helpful-data rows with whitespace around turns select features, strictly."""
    answers = {"harmful": "Keep them in plain text and email them to yourself.", "helpful": GOOD[1]["content"]}
    for name, answer in answers.items():  # every answer opens with blank lines, as in the reported file
        rows = [{"messages": [GOOD[0], {"role": "assistant", "content": "\n" * (1 + i % 3) + answer}]} for i in range(6)]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv(model_registry.USER_REGISTRY_ENV, str(tiny_chatml["registry"]))
    monkeypatch.setenv("EMGEO_BUILD", str(tmp_path / "build"))
    code = screen.main(["--method", "geometry", str(tmp_path / "helpful.jsonl"), "--model", "tiny-chatml", "--harmful-data", str(tmp_path / "harmful.jsonl"),
                        "--helpful-data", str(tmp_path / "helpful.jsonl"), "--k", "4", "--fraction", "0.5", "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    assert ranked_lines(tmp_path / "out") == list(range(1, 7))


def test_every_method_scores_the_same_rows_side_by_side(tiny_chatml, tmp_path, monkeypatch, capsys):
    """`--method all`: geometry, persona and judge score every row; the default ranks; each row has its
    percentile among the helpful reference rows and the geometry score's top features."""
    code, out, err = run_screen(tiny_chatml, FIXTURE, tmp_path / "out", monkeypatch, capsys, extra=("--method", "all", "--skip-invalid", "--max-invalid-share", "0.5"))
    assert code == 0, err
    ranked = pd.read_csv(tmp_path / "out" / "ranked.csv")
    assert {"score_geometry", "score_persona", "score_judge", "percentile", "flagged", "top_features"} <= set(ranked.columns)
    assert (ranked.method == screen.DEFAULT_METHOD).all() and ranked.score.equals(ranked[f"score_{screen.DEFAULT_METHOD}"])
    assert ranked.percentile.between(0, 100).all() and ranked.score.is_monotonic_decreasing
    assert f"method: {screen.DEFAULT_METHOD} (the default)" in out and "rows above the helpful reference rows' 95th percentile" in out
