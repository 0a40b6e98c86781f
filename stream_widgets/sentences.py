"""Chain-of-thought sentences: the one segmentation used by the tagger and the attention code.

The rules are those of the Thought Anchors "chunks" (SPEC section 3), so that sentence indices line up
with the labelled data in `stream_widgets/data/thought_anchors/`:

1. If the text contains `<think>`, keep only what follows the first `<think>` (up to a later `<think>`,
   if any) and, within that, what precedes the first `</think>`; strip surrounding whitespace.
2. Cut after the first character of a blank line (`\\n\\n`, also `\\r\\n\\r\\n`) and after `.`, `?` or `!`
   when the next character is a space or a newline. Pieces are stripped; empty pieces vanish; the
   trailing fragment is kept as the last piece.
3. A piece shorter than 10 characters merges into the next one (into the previous one if it is last),
   repeatedly, so a merged piece that is still short keeps merging. Lengths are measured as in the
   original code: stripped pieces joined by a single space.

Every `Sentence` keeps its character span in the **original** string passed in (half-open); a merged
sentence spans all its pieces, so its `text` is the original slice, which differs from the Thought Anchors
chunk (pieces joined by one space) in whitespace only. `token_spans` adds token spans from a tokenizer's
`offset_mapping`.

Cost: O(len(text)) time and memory; 100k characters take a few milliseconds.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MIN_SENTENCE_CHARS", "Sentence", "split_sentences", "think_region", "token_spans"]

MIN_SENTENCE_CHARS = 10
"""A piece shorter than this merges into its neighbour (Thought Anchors rule)."""

_PARAGRAPH_CUT = re.compile(r"(?=\n\n|\r\n\r\n)")  # cut after the first character of the blank line
_SENTENCE_CUT = re.compile(r"[.?!](?=[ \n])")  # cut after the punctuation mark


@dataclass(frozen=True)
class Sentence:
    """One CoT sentence (a Thought Anchors chunk).

    Attributes:
        index: Position in the trace, from 0.
        text: The sentence, `original[char_start:char_end]`.
        char_start: First character, an offset into the original text (inclusive).
        char_end: End offset into the original text (exclusive).
        token_start: First token (inclusive), once `token_spans` has run; else None.
        token_end: End token (exclusive), once `token_spans` has run; else None.
    """

    index: int
    text: str
    char_start: int
    char_end: int
    token_start: int | None = None
    token_end: int | None = None

    @property
    def n_tokens(self) -> int | None:
        """Number of tokens, or None before `token_spans`."""
        if self.token_start is None or self.token_end is None:
            return None
        return self.token_end - self.token_start


def think_region(text: str) -> tuple[int, int]:
    """Return the half-open character range of the reasoning inside `<think>...</think>`, stripped.

    Without `<think>` the whole text is the region (a missing `</think>` means "to the end").

    Args:
        text: The original text.

    Returns:
        `(start, end)` offsets into `text`; `start == end` when the region is empty or blank.
    """
    start, end = 0, len(text)
    opening = text.find("<think>")
    if opening >= 0:
        start = opening + len("<think>")
        second = text.find("<think>", start)
        if second >= 0:
            end = second
    closing = text.find("</think>", start, end)
    if closing >= 0:
        end = closing
    return _strip_span(text, start, end)


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink `[start, end)` so that it neither starts nor ends with whitespace (as `str.strip`)."""
    piece = text[start:end]
    stripped = piece.lstrip()
    if not stripped:
        return start, start
    start += len(piece) - len(stripped)
    end = start + len(stripped.rstrip())
    return start, end


def split_sentences(text: str) -> list[Sentence]:
    """Split a chain of thought into sentences by the Thought Anchors chunk rules (module docstring).

    Args:
        text: The trace, with or without the prompt and `<think>` tags.

    Returns:
        The sentences in order, with character spans into `text`; `[]` for empty or blank reasoning.

    Raises:
        ValueError: If `text` is not a `str`.
    """
    if not isinstance(text, str):
        raise ValueError(f"split_sentences expects a str, got {type(text).__name__}; decode bytes first")
    region_start, region_end = think_region(text)
    if region_start == region_end:
        return []
    region = text[region_start:region_end]
    cuts = {m.start() + 1 for m in _PARAGRAPH_CUT.finditer(region)}
    # "followed by a space or newline": the mark must not be the region's last character, which the
    # lookahead already guarantees.
    cuts.update(m.end() for m in _SENTENCE_CUT.finditer(region))
    bounds = [0, *sorted(cuts), len(region)]

    # pieces: [start, end, canonical length] with offsets into `text`
    pieces: list[list[int]] = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        start, end = _strip_span(text, region_start + lo, region_start + hi)
        if end > start:
            pieces.append([start, end, end - start])

    merged = _merge_short(pieces)
    return [Sentence(i, text[start:end], start, end) for i, (start, end, _) in enumerate(merged)]


def _merge_short(pieces: list[list[int]]) -> list[list[int]]:
    """Merge pieces under `MIN_SENTENCE_CHARS` into the next (the previous, if last), as Thought Anchors.

    The canonical length of a merge is `len(a) + 1 + len(b)` (pieces joined by one space), whatever the
    whitespace between them in the original, so that the merge decisions match the reference data.
    """
    i = 0
    while i < len(pieces):
        if pieces[i][2] >= MIN_SENTENCE_CHARS:
            i += 1
            continue
        if i == len(pieces) - 1:
            if i == 0:
                break  # a lone short sentence stays as it is
            previous = pieces[i - 1]
            pieces[i - 1] = [previous[0], pieces[i][1], previous[2] + 1 + pieces[i][2]]
            pieces.pop(i)
            # the previous piece was already long enough: nothing left to merge
        else:
            following = pieces[i + 1]
            pieces[i + 1] = [pieces[i][0], following[1], pieces[i][2] + 1 + following[2]]
            pieces.pop(i)  # stay at i: the merged piece may still be short
    return pieces


def token_spans(
    sentences: Sequence[Sentence],
    offsets: Sequence[tuple[int, int]],
    text: str | None = None,
) -> list[Sentence]:
    """Fill `token_start`/`token_end` from a tokenizer's `offset_mapping`.

    A token belongs to the sentence that contains its first non-space character. Without `text`, the
    token's first character that lies inside a sentence is used, which is the same thing because the gaps
    between sentences are whitespace. A token whose first non-space character lies outside every sentence
    (e.g. `"<think>\\nOkay"`) belongs to the first sentence it overlaps; tokens that overlap no sentence
    (prompt, answer, special tokens with empty offsets) belong to none. A sentence that gets no token
    (only possible when one token covers it entirely, starting in the previous one) gets an empty span at
    the next token.

    Args:
        sentences: Output of `split_sentences`, in order.
        offsets: `[T]` pairs `(char_start, char_end)` into the same text, in token order (a list,
            numpy array or tensor of shape `[T, 2]`; a leading batch dimension of 1 is accepted).
        text: The original text, to skip leading whitespace inside tokens; optional.

    Returns:
        New `Sentence` objects with token spans (half-open); O(T + S) time.

    Raises:
        ValueError: If `offsets` are not pairs or go backwards.
    """
    pairs = _as_pairs(offsets)
    if not sentences:
        return []
    starts = [s.char_start for s in sentences]
    ends = [s.char_end for s in sentences]
    first: list[int | None] = [None] * len(sentences)
    last: list[int | None] = [None] * len(sentences)
    s = 0  # sentences before s end before the current token's anchor
    previous_start = -1
    for t, (lo, hi) in enumerate(pairs):
        if hi <= lo:
            continue  # special token or empty offset
        if lo < previous_start:
            raise ValueError(f"offsets go backwards at token {t}: {lo} < {previous_start}")
        previous_start = lo
        anchor = lo
        if text is not None:
            piece = text[lo:hi]
            stripped = piece.lstrip()
            if stripped:
                anchor = lo + len(piece) - len(stripped)
        while s < len(sentences) and ends[s] <= anchor:
            s += 1
        owner = None
        if s < len(sentences) and starts[s] <= anchor:
            owner = s
        else:
            # the anchor is in a gap: take the first sentence the token overlaps (searching from the
            # token start, since a leading tag like "<think>" may lie before the anchor)
            k = s
            while k > 0 and ends[k - 1] > lo:
                k -= 1
            if k < len(sentences) and starts[k] < hi and ends[k] > lo:
                owner = k
        if owner is not None:
            if first[owner] is None:
                first[owner] = t
            last[owner] = t
    out: list[Sentence] = []
    next_token = 0
    for i, sentence in enumerate(sentences):
        if first[i] is None:
            begin = end = next_token
        else:
            begin = max(first[i], next_token)
            end = max(last[i] + 1, begin)
        next_token = end
        out.append(dataclasses.replace(sentence, token_start=begin, token_end=end))
    return out


def _as_pairs(offsets: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Turn a list / array / tensor of `[T, 2]` (or `[1, T, 2]`) offsets into int pairs."""
    if hasattr(offsets, "tolist"):
        offsets = offsets.tolist()
    offsets = list(offsets)
    if len(offsets) == 1 and offsets[0] and isinstance(offsets[0][0], (list, tuple)):
        offsets = list(offsets[0])  # a batch of one
    pairs = []
    for t, pair in enumerate(offsets):
        if len(pair) != 2:
            raise ValueError(f"offsets[{t}] should be a (char_start, char_end) pair, got {pair!r}")
        pairs.append((int(pair[0]), int(pair[1])))
    return pairs
