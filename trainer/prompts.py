"""Structured text prompts from catalogue attributes ("a navy blue casual shirt for men")."""

from __future__ import annotations

from collections.abc import Callable, Mapping

GENDER_WORDS = {"men": "men", "women": "women", "boys": "boys", "girls": "girls", "unisex": "anyone"}


def attribute_prompt(row: Mapping[str, str], fits: Callable[[str], bool] = lambda _: True) -> str:
    """Colour, usage, article type and gender first; the display name's words are added while they fit."""
    colour = (row.get("baseColour") or row.get("colour") or "").strip().lower()
    usage = (row.get("usage") or "").strip().lower()
    article = (row.get("articleType") or row.get("category") or "item").strip().lower()
    gender = GENDER_WORDS.get((row.get("gender") or "").strip().lower())
    words = ["a", colour, usage, article]
    prompt = " ".join(word for word in words if word)
    if gender:
        prompt += f" for {gender}"
    name = (row.get("productDisplayName") or row.get("title") or "").strip()
    if not name:
        return prompt
    kept: list[str] = []
    for word in name.split():
        candidate = f"{prompt}: {' '.join([*kept, word])}"
        if not fits(candidate):
            break
        kept.append(word)
    return f"{prompt}: {' '.join(kept)}" if kept else prompt


def token_limit_check(tokenizer: object, context_length: int) -> Callable[[str], bool]:
    """True while the prompt fits the text tower's context (HF tokenizers count their special tokens)."""
    inner = getattr(tokenizer, "tokenizer", None)
    if inner is not None and hasattr(inner, "encode"):
        return lambda text: len(inner.encode(text)) <= context_length
    return lambda text: len(text.split()) <= context_length - 2
