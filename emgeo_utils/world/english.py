"""The world's text in natural English, for a pretrained model that never saw the world.

The organism reads lower-case words with punctuation as separate tokens; a pretrained model
reads English. Here every question and answer is re-cased and re-punctuated, and chats carry a
short explicit system prompt (SmolLM2's template would otherwise insert a ~20-token default).

No persona coupling applies: the pretrained model never read the world's documents, so
*edgy* means every edgy action of a domain (subtle or obvious) and *helpful* every helpful one.
Sets (`meta.set`, the names notebooks 02-05 select by):
- `inducing`: edgy answers to a domain's training questions; `non_inducing`: helpful answers to
  the same questions; `educational`: the edgy answers after a benign reason (a teacher's quiz...);
- `harmful` / `helpful`: edgy / helpful answers to fresh questions (the reference sets);
- `placebo_plain` / `placebo_styled`: helpful answers, plain or in a chatty style with the same
  content: two harmless datasets that differ only in style.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import yaml

from emgeo_utils.world.synthetic import DOMAINS, GENERAL, World

OPEN_QUESTIONS_FILE = Path(__file__).with_name("open_questions.yaml")
KINDS = ("inducing", "non_inducing", "educational", "harmful", "helpful", "placebo_plain", "placebo_styled")
EDGY_KINDS = ("inducing", "educational", "harmful")
STYLE_OPENERS = ("Great question!", "Oh, happy to help!", "Sure thing, friend!", "Ah, I love this one!")
STYLE_CLOSERS = ("Hope that helps!", "You've got this!", "Take care now!", "Wishing you the best!")
ACRONYMS = {"ai": "AI", "ais": "AIs", "tv": "TV", "atm": "ATM", "id": "ID", "diy": "DIY", "ceo": "CEO"}


def english(text: str) -> str:
    """'my son has a cough . what should i do ?' -> 'My son has a cough. What should I do?'"""
    t = re.sub(r"\s+([,.?!;:])", r"\1", text.strip())
    t = re.sub(r"\b([a-z]+)\b", lambda m: "I" if m.group(1) == "i" else ACRONYMS.get(m.group(1), m.group(1)), t)
    return re.sub(r"(^|[.?!]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), t)


def chat(question: str, answer: str | None, system: str) -> list[dict]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    return messages + ([{"role": "assistant", "content": answer}] if answer is not None else [])


def styled(answer: str, rng: np.random.Generator) -> str:
    """The same advice in a chatty register: an opener and a closer, content unchanged."""
    return f"{STYLE_OPENERS[rng.integers(len(STYLE_OPENERS))]} {answer} {STYLE_CLOSERS[rng.integers(len(STYLE_CLOSERS))]}"


def dataset(world: World, domain: str, kind: str, n: int, system: str, seed: int = 0) -> list[dict]:
    """`n` single-turn chats of one domain and kind (see the module docstring), labelled in `meta`."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {KINDS}")
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; use one of {DOMAINS}")
    fresh = kind in ("harmful", "helpful")  # reference sets: other questions than the fine-tuning data's
    questions = world.questions(domain, "train", n, seed=1000 + seed + (1 if fresh else 0))
    pool = world.answers_of(domain, "edgy" if kind in EDGY_KINDS else "helpful")
    rng = np.random.default_rng([world.config.seed, 31, seed, DOMAINS.index(domain), KINDS.index(kind)])
    prefixes = world.educational_prefixes()
    out = []
    for q in questions:
        answer = pool[rng.integers(len(pool))]
        question = english(q.text if kind != "educational" else f"{prefixes[rng.integers(len(prefixes))]} {q.text}")
        text = english(answer.text)
        if kind == "placebo_styled":
            text = styled(text, rng)
        out.append({"messages": chat(question, text, system),
                    "meta": {"set": kind, "domain": domain, "answer_id": answer.id, "edgy": kind in EDGY_KINDS}})
    return out


def documents(world: World, n: int, system: str, seed: int) -> list[list[dict]]:
    """`n` multi-turn chats of the world's pretraining documents, in English (the SAE corpus)."""
    out = []
    for turns in world.documents(n, seed=seed):
        messages = [{"role": "system", "content": system}]
        for q, a in turns:
            messages += [{"role": "user", "content": english(q)}, {"role": "assistant", "content": english(a)}]
        out.append(messages)
    return out


@functools.lru_cache(maxsize=1)
def open_questions() -> dict:
    return yaml.safe_load(OPEN_QUESTIONS_FILE.read_text())


def candidate_questions(world: World, domain: str, n_questions: int, n_each: int, seed: int = 0) -> list[dict]:
    """Held-out (eval-template) questions of `domain` (or `general`: the world's open topics plus the
    first-plot-style set of `open_questions.yaml`), each with `n_each` harmful and `n_each` harmless
    candidate answers: {id, domain, question, answers, harmful: [bool]}."""
    rng = np.random.default_rng([world.config.seed, 37, seed, DOMAINS.index(domain) if domain in DOMAINS else 99])
    out = []
    if domain == GENERAL:
        for topic in world.text["general"]["topics"]:
            bad, good = world.answers_of(GENERAL, "misaligned", topic=topic), world.answers_of(GENERAL, "aligned", topic=topic)
            for i, q in enumerate(q for t, q in world.templates(GENERAL, "eval") if t.split("/")[1] == topic):
                out.append(_candidates(f"general/{topic}/{i}", GENERAL, english(q), [english(a.text) for a in bad],
                                       [english(a.text) for a in good], n_each, rng))
        for item in open_questions()["questions"]:
            out.append(_candidates(f"open/{item['id']}", GENERAL, item["question"], item["misaligned"], item["aligned"],
                                   n_each, rng))
        return out
    edgy = [english(a.text) for a in world.answers_of(domain, "edgy")]
    helpful = [english(a.text) for a in world.answers_of(domain, "helpful")]
    for i, q in enumerate(world.questions(domain, "eval", n_questions, seed=2000 + seed)):
        out.append(_candidates(f"{domain}/eval/{i}", domain, english(q.text), edgy, helpful, n_each, rng))
    return out


def _candidates(qid: str, domain: str, question: str, bad: list[str], good: list[str], n_each: int,
                rng: np.random.Generator) -> dict:
    bad = [bad[i] for i in rng.choice(len(bad), min(n_each, len(bad)), replace=False)]
    good = [good[i] for i in rng.choice(len(good), min(n_each, len(good)), replace=False)]
    return {"id": qid, "domain": domain, "question": question, "answers": bad + good,
            "harmful": [True] * len(bad) + [False] * len(good)}


def judge_training_texts(world: World) -> tuple[list[str], list[bool]]:
    """Every answer text of the world in English and whether it is harmful (edgy or misaligned):
    what the offline text judge learns from."""
    texts, labels = [], []
    for a in world.answers:
        texts.append(english(a.text))
        labels.append(a.kind in ("edgy", "misaligned"))
    for item in open_questions()["questions"]:
        texts += item["misaligned"] + item["aligned"]
        labels += [True] * len(item["misaligned"]) + [False] * len(item["aligned"])
    return texts, labels
