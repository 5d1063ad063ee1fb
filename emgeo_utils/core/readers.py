"""Reading fine-tuning and evaluation data, with errors that say which file, line and field.

Formats:
- **chat JSONL** (public EM datasets: insecure / secure / educational code, bad medical advice,
  ...): one JSON object per line, `{"messages": [{"role": "user"|"assistant"|"system",
  "content": "..."}, ...]}`;
- **OpenAI persona-features domain files**: the same, but each message's content may be
  `{"content_type": "text", "parts": ["..."]}`; normalised to plain strings;
- **harmful-text JSONL** (RealToxicityPrompts-style): `{"prompt": {"text": ..., "toxicity": ...},
  "continuation": {"text": ..., "toxicity": ...}}`;
- **evaluation-question YAML**: a list of `{id, type, paraphrases, system?, samples_per_paraphrase?,
  judge?, judge_prompts?}` (YAML anchors allowed).

A UTF-8 byte-order mark and blank lines are accepted; anything else malformed raises
`DataError` naming the file, the line and the field.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from emgeo_utils.core import paths

ROLES = ("system", "user", "assistant")
MAX_LINE_BYTES = 1_000_000


class DataError(ValueError):
    """A malformed input file: the message names the file, line and field and says what to fix."""

    def __init__(self, path: Path | str, line: int | None, field: str | None, problem: str):
        where = f"{Path(path).name}" + (f", line {line}" if line else "") + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.field = str(path), line, field


def _lines(path: Path, skipped: list[DataError] | None = None):
    """(line number, decoded text) of non-blank lines; refuses non-UTF-8 and enormous lines, or, given
    a `skipped` list, appends their errors to it and reads on."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, None, "no such file")
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = _decoded(path, number, raw)
            except DataError as err:
                if skipped is None:
                    raise
                skipped.append(err)
                continue
            if text.strip():
                yield number, text


def _decoded(path: Path, number: int, raw: bytes) -> str:
    if len(raw) > MAX_LINE_BYTES:
        raise DataError(path, number, None, f"line is {len(raw):,} bytes (limit {MAX_LINE_BYTES:,}); "
                                            "is this really one JSON object per line?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(path, number, None, f"not UTF-8 (byte {err.start}); re-encode the file as UTF-8") from err
    return text.removeprefix("\ufeff") if number == 1 else text


def _json(path: Path, number: int, text: str) -> dict:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(path, number, None, f"invalid JSON ({err.msg} at column {err.colno}); "
                                             "each line must be one complete JSON object") from err
    if not isinstance(obj, dict):
        raise DataError(path, number, None, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _content(path, number, i, content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict) and "parts" in content:  # OpenAI persona-features files
        parts = content["parts"]
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            raise DataError(path, number, f"messages[{i}].content.parts", "must be a list of strings")
        return "\n".join(parts)
    raise DataError(path, number, f"messages[{i}].content", "must be a string or {content_type, parts}")


def chat_sample(obj: dict, path: Path | str = "<data>", number: int | None = None) -> dict:
    """Validate one chat sample and normalise its messages to {role, content: str}."""
    if "messages" not in obj:
        raise DataError(path, number, "messages", f"missing (keys present: {sorted(obj)})")
    messages = obj["messages"]
    if not isinstance(messages, list) or not messages:
        raise DataError(path, number, "messages", "must be a non-empty list of {role, content}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise DataError(path, number, f"messages[{i}]", "must be an object with role and content")
        role = m.get("role")
        if role not in ROLES:
            raise DataError(path, number, f"messages[{i}].role", f"unknown role {role!r}; use one of {ROLES}")
        if "content" not in m:
            raise DataError(path, number, f"messages[{i}].content", "missing; give every message a content string")
        content = _content(path, number, i, m["content"])
        if role == "assistant" and not content.strip():
            raise DataError(path, number, f"messages[{i}].content", "empty assistant turn: nothing to train on or score; "
                                                                   "write the answer or remove the row")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise DataError(path, number, "messages", "no assistant turn: nothing to fine-tune on or score")
    sample = {"messages": out}
    if isinstance(obj.get("meta"), dict):
        sample["meta"] = obj["meta"]
    return sample


MAX_INVALID_SHARE = 0.05  # with skip_invalid: a file with more invalid rows than this still fails


def read_chat_jsonl(path: Path | str, skip_invalid: bool = False,
                    max_invalid_share: float = MAX_INVALID_SHARE) -> list[dict]:
    """Chat samples of a JSONL file (public EM format or OpenAI persona-features format).

    Strict by default: the first invalid row raises. With `skip_invalid`, invalid rows are left
    out and each is reported (line, reason) on stdout and in `build/logs/skipped_rows.log`; a
    file whose invalid share exceeds `max_invalid_share` still fails, listing the first ones.
    """
    rows, skipped = read_chat_lines(path, skip_invalid)
    if skipped:
        report_skipped(path, skipped, len(rows) + len(skipped), max_invalid_share)
    if not rows:
        raise DataError(path, None, None, "the file holds no samples")
    return [sample for _, sample in rows]


def read_chat_lines(path: Path | str, skip_invalid: bool = False) -> tuple[list[tuple[int, dict]], list[DataError]]:
    """(line number, chat sample) of every valid row, and the errors of the invalid ones (strict: the
    first raises). For callers that report rows by their line (the screen) and that decide
    themselves how many invalid rows are too many; `read_chat_jsonl` is this plus that decision."""
    rows, skipped = [], []
    for number, text in _lines(Path(path), skipped if skip_invalid else None):
        try:
            rows.append((number, chat_sample(_json(Path(path), number, text), path, number)))
        except DataError as err:
            if not skip_invalid:
                raise
            skipped.append(err)
    return rows, skipped


def report_skipped(path: Path | str, skipped: list[DataError], n_rows: int, max_share: float) -> None:
    share = len(skipped) / n_rows
    lines = [f"skipped {len(skipped)} of {n_rows} rows ({share:.1%}) of {Path(path).name}:"] + [f"  {e}" for e in skipped]
    if share > max_share:
        raise DataError(path, None, None, f"{len(skipped)} of {n_rows} rows ({share:.1%}) are invalid, more than "
                                          f"the {max_share:.0%} allowed; first: {'; '.join(map(str, skipped[:3]))}")
    print("\n".join(lines))
    log = paths.build_dir() / "logs" / "skipped_rows.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write("\n".join(lines) + "\n")


def read_harmful_text(path: Path | str, min_toxicity: float = 0.5, max_toxicity: float = 1.0) -> list[dict]:
    """RealToxicityPrompts-style rows as chat samples (prompt as user, continuation as assistant),
    kept when the continuation's toxicity lies in [min_toxicity, max_toxicity] (missing scores
    are kept only with the default range). A low range gives the non-toxic reference set."""
    out = []
    for n, text in _lines(Path(path)):
        obj = _json(Path(path), n, text)
        for part in ("prompt", "continuation"):
            if not isinstance(obj.get(part), dict) or not isinstance(obj[part].get("text"), str):
                raise DataError(path, n, f"{part}.text", "missing or not a string")
        tox = obj["continuation"].get("toxicity")
        if tox is not None and not isinstance(tox, (int, float)):
            raise DataError(path, n, "continuation.toxicity", "must be a number or null")
        keep = (min_toxicity, max_toxicity) == (0.5, 1.0) if tox is None else min_toxicity <= tox <= max_toxicity
        if keep:
            out.append({"messages": [{"role": "user", "content": obj["prompt"]["text"]},
                                     {"role": "assistant", "content": obj["continuation"]["text"]}]})
    if not out:
        raise DataError(path, None, None, f"no row has continuation toxicity in [{min_toxicity}, {max_toxicity}]")
    return out


QUESTION_FIELDS = {"id": str, "type": str, "paraphrases": list, "system": (str, type(None)),
                   "samples_per_paraphrase": int, "judge": str, "judge_prompts": dict}


def read_questions_yaml(path: Path | str) -> list[dict]:
    """Evaluation questions (the public EM format); YAML anchors are resolved by the parser."""
    path = Path(path)
    try:
        items = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise DataError(path, getattr(getattr(err, "problem_mark", None), "line", None), None, f"unreadable YAML: {err}") from err
    if not isinstance(items, list) or not items:
        raise DataError(path, None, None, "expected a non-empty list of questions")
    seen = set()
    for i, q in enumerate(items):
        where = f"[{i}]"
        if not isinstance(q, dict):
            raise DataError(path, None, where, "each question is a mapping")
        for field in ("id", "paraphrases"):
            if field not in q:
                raise DataError(path, None, f"{where}.{field}", "missing")
        for field, kind in QUESTION_FIELDS.items():
            if field in q and not isinstance(q[field], kind):
                raise DataError(path, None, f"{where}.{field}", f"has the wrong type ({type(q[field]).__name__})")
        if not q["paraphrases"] or not all(isinstance(p, str) and p.strip() for p in q["paraphrases"]):
            raise DataError(path, None, f"{where}.paraphrases", "must be a non-empty list of non-empty strings")
        if q["id"] in seen:
            raise DataError(path, None, f"{where}.id", f"duplicate id {q['id']!r}")
        seen.add(q["id"])
    return items
