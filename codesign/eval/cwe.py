"""RULER common-words extraction (CWE): the sample generator and the substring scorer.

Follows RULER (Hsieh et al., arXiv 2404.06654; ../shared/reference/RULER_CWE.md): the word pool is the
wonderwords nouns + adjectives + verbs, de-duplicated, sorted and shuffled with `Random(seed)`; a sample of n
words makes the first `num_cw` of them "common" and writes `common × repeats + uncommon × repeats`, shuffled
with a fresh `Random(seed)`, as "1. w1 2. w2 ..."; one few-shot example (template + answer prefix + its answer)
precedes the query; n is the largest multiple of 10 whose prompt + `tokens_to_generate` fits the target length
in the model's own tokens; a sample that still overflows drops 10 words. A prediction scores the fraction of
reference words found in it (case-insensitive substring, order ignored), reported as mean × 100.

Where this differs from RULER's script, on purpose: RULER draws every sample's words from one global random
stream, so sample i depends on how many samples and lengths came before it; here sample i at length L draws from
`Random(f"{seed}:{L}:{i}")`, so any (length, sample) is reproducible on its own. The overflow check counts the
whole prompt (few-shot example included), which is what the model reads.

Settings: "standard" is RULER's (10 common words, 30 / 3 repeats at >= 4096 tokens, 6 / 1 below, 120 tokens
generated). A 135M model scores near zero there at any length, so "scaled" asks for fewer common words with a
larger frequency gap (its parameters travel with every result). The question names the number of common words.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from functools import lru_cache

from codesign.errors import ConfigError, ModelError

TEMPLATE = (
    "Below is a numbered list of words. In these words, some appear more often than others. "
    "Memorize the ones that appear most often.\n{context}\nQuestion: What are the {num_cw} most common words "
    "in the above list?"
)
ANSWER_PREFIX = " Answer: The top {num_cw} words that appear most often in the list are:"


@dataclass(frozen=True)
class Regime:
    """Repeats of one context-length regime: the few-shot example and the query."""

    example_words: int
    example_repeats_common: int
    example_repeats_uncommon: int
    repeats_common: int
    repeats_uncommon: int


@dataclass(frozen=True)
class CweSetting:
    """Everything that defines a CWE sample set besides the lengths and the seed."""

    name: str
    num_cw: int
    short: Regime  # context length < long_from
    long: Regime  # context length >= long_from
    long_from: int = 4096
    tokens_to_generate: int = 120
    incremental: int = 10  # n moves in steps of this many words (RULER's `incremental`)

    def regime(self, length: int) -> Regime:
        return self.long if length >= self.long_from else self.short

    def to_dict(self) -> dict:
        return asdict(self)


SETTINGS: dict[str, CweSetting] = {
    # RULER's defaults (freq_cw 30, freq_ucw 3, num_cw 10; few-shot 40 words at 10 / 3; below 4K: 20 at 3 / 1
    # for the example and 6 / 1 for the query).
    "standard": CweSetting("standard", 10, short=Regime(20, 3, 1, 6, 1), long=Regime(40, 10, 3, 30, 3)),
    # For ~100M-parameter models: 3 common words, 10x more frequent than the rest at every length, and an
    # answer of 3 words (40 generated tokens are ample).
    "scaled": CweSetting(
        "scaled", 3, short=Regime(10, 5, 1, 10, 1), long=Regime(10, 5, 1, 20, 2), tokens_to_generate=40
    ),
}


@dataclass(frozen=True)
class CweSample:
    """One prompt and its reference answer."""

    length: int  # the target context length
    index: int
    num_words: int
    prompt: str  # few-shot example + "\n" + query + answer prefix: what the model continues
    answer: list[str]  # the common words, in sampled order
    prompt_tokens: int

    def answer_text(self) -> str:
        """The reference continuation, " 1. w1 2. w2 ...", used by the teacher-forced proxy."""
        return " " + numbered(self.answer)


@lru_cache(maxsize=4)
def word_pool(seed: int = 42) -> tuple[str, ...]:
    """wonderwords nouns + adjectives + verbs, de-duplicated, sorted, shuffled with Random(seed) (~8.2k)."""
    import wonderwords

    cats = wonderwords.RandomWord()._categories  # the word lists RULER reads (no public accessor)
    words = sorted({w for c in ("noun", "adjective", "verb") for w in cats[c]})
    random.Random(seed).shuffle(words)
    return tuple(words)


def numbered(words: list[str]) -> str:
    return " ".join(f"{i + 1}. {w}" for i, w in enumerate(words))


def _example(rng: random.Random, seed: int, n: int, rc: int, ru: int, num_cw: int) -> tuple[str, list[str]]:
    """(numbered context, common words) of one word list with n distinct words."""
    pool = word_pool(seed)
    if n > len(pool):
        raise ConfigError(f"CWE needs {n} distinct words; the pool has {len(pool)}")
    chosen = rng.sample(pool, n)
    common, uncommon = chosen[:num_cw], chosen[num_cw:]
    items = common * rc + uncommon * ru
    random.Random(seed).shuffle(items)  # a fresh Random(seed), as RULER does
    return numbered(items), common


def build_prompt(
    setting: CweSetting, length: int, n: int, seed: int, rng: random.Random
) -> tuple[str, list[str]]:
    """(prompt, answer) for n query words: few-shot example with its answer, newline, query + answer prefix."""
    r, c = setting.regime(length), setting.num_cw
    ex_ctx, ex_answer = _example(
        rng, seed, r.example_words, r.example_repeats_common, r.example_repeats_uncommon, c
    )
    ctx, answer = _example(rng, seed, n, r.repeats_common, r.repeats_uncommon, c)
    prefix = ANSWER_PREFIX.format(num_cw=c)
    example = TEMPLATE.format(context=ex_ctx, num_cw=c) + prefix + " " + numbered(ex_answer)
    return example + "\n" + TEMPLATE.format(context=ctx, num_cw=c) + prefix, answer


def count_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text)["input_ids"])


def fit_num_words(tokenizer, setting: CweSetting, length: int, seed: int = 42) -> int:
    """Largest n (a multiple of `incremental`) whose prompt + answer + generated tokens fit `length` tokens.

    Binary search with the model's own tokenizer over one probe draw (Random(f"{seed}:{length}:probe")); the
    token count grows with n, so the search is exact for that draw. ConfigError if not even the smallest n fits.
    """
    step = setting.incremental
    lo_n = (setting.num_cw // step + 1) * step  # the smallest n with at least one uncommon word

    def fits(n: int) -> bool:
        prompt, answer = build_prompt(setting, length, n, seed, random.Random(f"{seed}:{length}:probe"))
        return count_tokens(tokenizer, prompt + " " + numbered(answer)) + setting.tokens_to_generate <= length

    lo, hi = lo_n // step, len(word_pool(seed)) // step  # in units of `step`
    if not fits(lo * step):
        raise ConfigError(
            f"CWE {setting.name}: a context of {length} tokens cannot hold the few-shot example, {lo_n} words "
            f"and {setting.tokens_to_generate} generated tokens; use a longer --lengths value"
        )
    while lo < hi:  # invariant: fits(lo)
        mid = (lo + hi + 1) // 2
        if fits(mid * step):
            lo = mid
        else:
            hi = mid - 1
    return lo * step


def make_samples(
    tokenizer, setting: CweSetting, length: int, num_samples: int, seed: int = 42
) -> list[CweSample]:
    """`num_samples` CWE samples at `length` tokens, each reproducible from (seed, length, index) alone."""
    if tokenizer is None:
        raise ModelError("CWE needs the model's tokenizer to fit the context length; the model has none")
    n_fit = fit_num_words(tokenizer, setting, length, seed)
    out = []
    for i in range(num_samples):
        n = n_fit
        while True:
            prompt, answer = build_prompt(setting, length, n, seed, random.Random(f"{seed}:{length}:{i}"))
            tokens = count_tokens(tokenizer, prompt)
            if tokens + setting.tokens_to_generate <= length or n - setting.incremental <= setting.num_cw:
                break
            n -= setting.incremental  # this draw tokenises longer than the probe: drop 10 words, as RULER
        out.append(CweSample(length, i, n, prompt, answer, tokens))
    return out


def score_prediction(prediction: str, answer: list[str]) -> float:
    """Fraction of reference words contained in the prediction (case-insensitive substring; RULER's
    string_match_all for one sample)."""
    pred = prediction.lower()
    return sum(w.lower() in pred for w in answer) / len(answer)


def resolve_setting(name: str) -> CweSetting:
    if name not in SETTINGS:
        raise ConfigError(f"unknown CWE setting {name!r}; choose one of {', '.join(SETTINGS)}")
    return SETTINGS[name]


def check_request(lengths: list[int], num_samples: int, max_len: int | None) -> None:
    """One-line errors for requests that cannot run, before any model work starts."""
    if num_samples <= 0:
        raise ConfigError(f"--samples must be a positive number of samples per length, got {num_samples}")
    if not lengths:
        raise ConfigError("give at least one context length (--lengths)")
    for length in lengths:
        if length <= 0:
            raise ConfigError(f"context length must be positive, got {length}")
        if max_len and length > max_len:
            raise ConfigError(f"context length {length} exceeds the model's maximum of {max_len} tokens")
