"""Words with speakers → retrieval passages: one speaker each, cut at sentence ends, bounded length.

Pure functions over `Word`s. A passage never spans a change of speaker; inside one speaker's run
the words are split into sentences (a word ending in `.`, `?`, `!` or `…`, possibly followed by a
closing quote or bracket) and sentences are packed greedily while the passage stays within
`max_seconds` (first word's start to last word's end) and `max_tokens`. A sentence that alone
exceeds a limit is cut at word boundaries. Every input word ends up in exactly one passage, in order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from chaffee_assets.lib.ids import validate_video_id
from chaffee_assets.lib.types import Passage, PassageOptions, Passages, Word

UNKNOWN_SPEAKER = "Unknown"

_SENTENCE_END = re.compile(r"[.?!…][\"'”’)\]»]*$")
_APPROX_TOKEN = re.compile(r"\w+|[^\w\s]")




def approx_token_count(text: str) -> int:
    """A tokenizer-free estimate: words and punctuation marks (close to WordPiece for English)."""
    return len(_APPROX_TOKEN.findall(text))


def is_sentence_end(word: Word) -> bool:
    return bool(_SENTENCE_END.search(word.text.strip()))


def build_passages(
    video_id: str,
    words: Sequence[Word],
    options: PassageOptions,
    count_tokens: Callable[[str], int] | None = None,
) -> Passages:
    """Cut `words` (in time order, each tagged with `.speaker`) into passages.

    `count_tokens` counts the tokens of one word's text (the embedder's tokenizer without special
    tokens); a passage's count is the sum over its words, which is exact for WordPiece and close for
    BPE tokenizers. Default: `approx_token_count`.
    """
    validate_video_id(video_id)
    counter = _WordTokens(count_tokens or approx_token_count)
    chunks: list[list[Word]] = []
    for run in _speaker_runs(words):
        chunks.extend(_pack_run(run, options, counter))
    passages = tuple(_passage(video_id, i, chunk) for i, chunk in enumerate(chunks))
    return Passages(video_id=video_id, passages=passages)


def speaker_of(word: Word) -> str:
    return word.speaker if word.speaker else UNKNOWN_SPEAKER


# -- stages -------------------------------------------------------------------------------------


class _WordTokens:
    """Token count per word text, memoised (the same words recur constantly in speech)."""

    def __init__(self, count: Callable[[str], int]):
        self._count = count
        self._cache: dict[str, int] = {}

    def __call__(self, word: Word) -> int:
        n = self._cache.get(word.text)
        if n is None:
            n = max(0, int(self._count(word.text)))
            self._cache[word.text] = n
        return n


def _speaker_runs(words: Sequence[Word]) -> list[list[Word]]:
    runs: list[list[Word]] = []
    for w in words:
        if runs and speaker_of(runs[-1][-1]) == speaker_of(w):
            runs[-1].append(w)
        else:
            runs.append([w])
    return runs


def _sentences(run: list[Word]) -> list[list[Word]]:
    out: list[list[Word]] = [[]]
    for w in run:
        out[-1].append(w)
        if is_sentence_end(w):
            out.append([])
    return [s for s in out if s]


class _Chunk:
    """The passage being filled: its words and running token count."""

    def __init__(self) -> None:
        self.words: list[Word] = []
        self.tokens = 0

    def fits(self, words: list[Word], tokens: int, options: PassageOptions) -> bool:
        if not self.words:
            first = words[0]
        else:
            first = self.words[0]
        return self.tokens + tokens <= options.max_tokens and words[-1].end - first.start <= options.max_seconds

    def add(self, words: list[Word], tokens: int) -> None:
        self.words.extend(words)
        self.tokens += tokens


def _pack_run(run: list[Word], options: PassageOptions, counter: _WordTokens) -> list[list[Word]]:
    """Greedy packing of one speaker's sentences; hard cuts inside sentences that are too long."""
    done: list[list[Word]] = []
    cur = _Chunk()

    def flush() -> None:
        nonlocal cur
        if cur.words:
            done.append(cur.words)
        cur = _Chunk()

    for sentence in _sentences(run):
        tokens = sum(counter(w) for w in sentence)
        if cur.fits(sentence, tokens, options):
            cur.add(sentence, tokens)
            continue
        flush()
        if cur.fits(sentence, tokens, options):
            cur.add(sentence, tokens)
            continue
        # a sentence longer than a passage: cut at word boundaries; its tail may take more sentences
        for w in sentence:
            n = counter(w)
            if cur.words and not cur.fits([w], n, options):
                flush()
            cur.add([w], n)  # an empty chunk always takes one word, even an over-long one
    flush()
    return done


def _passage(video_id: str, ordinal: int, words: list[Word]) -> Passage:
    return Passage(
        video_id=video_id,
        ordinal=ordinal,
        start=float(words[0].start),
        end=float(words[-1].end),
        speaker=speaker_of(words[0]),
        text="".join(w.text for w in words).strip(),
        n_words=len(words),
    )
