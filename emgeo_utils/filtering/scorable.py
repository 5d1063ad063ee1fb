"""Which rows of a chat file the screen can score, after one normalisation; the rest, reported by line.

Normalising: whitespace at both ends of every turn is stripped before the chat template renders it.
Blank lines that open an assistant turn merge with the template's own newline under byte-level BPE
tokenizers (SmolLM2's ChatML), so the prompt no longer renders as a prefix of the chat and the
answer's tokens cannot be found: public chat files have such rows, and their text is sound. The
templates of Gemma-2 and Llama-3 trim every turn themselves, so stripping scores the text those
models read anyway; the text inside a turn is left alone, and `filtered.jsonl` keeps each row as
written.

Skipping: a row the template still cannot render with its answer marked (a template that adds a
default system turn before a chat with no turn ahead of the answer, roles a template refuses), or
longer than the model's context once the probe question is appended, cannot be scored. It becomes
a `DataError` naming file, line and what to do, reported with the reader's invalid rows.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from emgeo_utils.core.readers import DataError
from emgeo_utils.features.activations import encode_with_probes

CHUNK = 256  # rows encoded together; a chunk that fails is encoded row by row to find the rows at fault


def strip_turns(sample: dict) -> tuple[dict, int]:
    """The sample with whitespace stripped at both ends of each turn, and how many turns changed."""
    messages = [{**m, "content": m["content"].strip()} for m in sample["messages"]]
    changed = sum(m["content"] != n["content"] for m, n in zip(sample["messages"], messages))
    return {**sample, "messages": messages}, changed


def context_length(model) -> int | None:
    """Positions the model reads (learned position tables index past it; rotary ones were never trained there)."""
    config = model.config
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


@dataclasses.dataclass
class Prepared:
    samples: list[dict]  # the scorable rows, turns stripped
    lines: list[int | None]  # their lines in the file
    probes: list[str]  # their probe questions
    kept: list[int]  # their positions in the rows handed in
    skipped: list[DataError]  # the rows that cannot be scored
    stripped: list[tuple[int | None, int]]  # (line, turns stripped) of the scorable rows that changed


def prepare(path: Path | str, lines: list[int | None], samples: list[dict], probes: list[str], tokenizer,
            context: int | None, model_name: str) -> Prepared:
    """Strip every row's turns and keep the rows that encode within `context` positions.

    Each row keeps the probe it was given: a row's score does not depend on which other rows were skipped."""
    normalised, changed = zip(*map(strip_turns, samples)) if samples else ((), ())
    problems = unscorable(list(normalised), probes, tokenizer, context, model_name)
    kept = [i for i in range(len(samples)) if i not in problems]
    skipped = [DataError(path, lines[i], field, problem) for i, (field, problem) in sorted(problems.items())]
    return Prepared(samples=[normalised[i] for i in kept], lines=[lines[i] for i in kept],
                    probes=[probes[i] for i in kept], kept=kept, skipped=skipped,
                    stripped=[(lines[i], changed[i]) for i in kept if changed[i]])


def unscorable(samples: list[dict], probes: list[str], tokenizer, context: int | None,
               model_name: str) -> dict[int, tuple[str | None, str]]:
    """{row: (field, what is wrong and what to do)} for the rows the screen cannot score."""
    problems = {}
    for start in range(0, len(samples), CHUNK):
        rows = range(start, min(start + CHUNK, len(samples)))
        try:
            lengths = dict(zip(rows, encoded_lengths(tokenizer, [samples[i] for i in rows], [probes[i] for i in rows])))
        except Exception:  # jinja raises whatever the template raises: find the rows at fault one by one
            lengths = {}
            for i in rows:
                try:
                    lengths[i] = encoded_lengths(tokenizer, [samples[i]], [probes[i]])[0]
                except Exception as err:  # as above
                    problems[i] = ("messages", template_problem(err, model_name))
        for i, n in lengths.items():
            if context is not None and n > context:
                problems[i] = (None, f"{n:,} tokens with the probe question appended, more than the {context:,} positions "
                                     f"{model_name} reads; shorten or split the conversation")
    return problems


def encoded_lengths(tokenizer, samples: list[dict], probes: list[str]) -> list[int]:
    """Tokens of each row as the scoring pass encodes it (chat, probe question, assistant prefix)."""
    return [len(e.ids) for e in encode_with_probes(tokenizer, [s["messages"] for s in samples], probes)]


def template_problem(err: Exception, model_name: str) -> str:
    return (f"{model_name}'s chat template cannot render this row with its answer marked ({type(err).__name__}: {err}); "
            "begin it with a user (or system and user) turn and alternate user and assistant turns")


def describe_stripped(stripped: list[tuple[int | None, int]], shown: int = 10) -> str:
    """One line saying which rows were normalised."""
    lines = [str(line) for line, _ in stripped if line is not None]
    listed = ", ".join(lines[:shown]) + (f" and {len(lines) - shown} more" if len(lines) > shown else "")
    return (f"stripped whitespace at the ends of {sum(n for _, n in stripped)} turns in {len(stripped)} rows before "
            f"templating" + (f" (lines {listed})" if listed else "") + "; filtered.jsonl keeps the rows as written")
