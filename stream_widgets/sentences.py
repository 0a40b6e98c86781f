"""Chain-of-thought sentences: the one segmentation used by the tagger and the attention code.

Two rule sets, chosen by name (`rules=`, one of `SENTENCE_RULES`):

`"thought-anchors"`: the rules of the Thought Anchors "chunks" (SPEC section 3), kept exactly, so that
sentence indices line up with the labelled data in `stream_widgets/data/thought_anchors/` (they reproduce,
whitespace aside, the chunk lists of all 40 math traces of the Thought Anchors data):

1. If the text contains `<think>`, keep only what follows the first `<think>` (up to a later `<think>`,
   if any) and, within that, what precedes the first `</think>`; strip surrounding whitespace.
2. Cut after the first character of a blank line (`\\n\\n`, also `\\r\\n\\r\\n`) and after `.`, `?` or `!`
   when the next character is a space or a newline. Pieces are stripped; empty pieces vanish; the
   trailing fragment is kept as the last piece.
3. A piece shorter than 10 characters merges into the next one (into the previous one if it is last),
   repeatedly, so a merged piece that is still short keeps merging. Lengths are measured as in the
   original code: stripped pieces joined by a single space.

`"default"` (`DEFAULT_SENTENCE_RULES`): the same three steps, except that step 2 drops the cuts that fall
inside a formula, an abbreviation or a list number, so that no sentence is a fragment such as
`/ (5! * 2!` or `arrangements.`. A cut after `.`, `?` or `!` is dropped when:

- it lies inside inline or display math: `$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]` (a delimiter pair
  counts only if its closer is the first one after the opener and no blank line lies between them; a `$`
  opens only before a non-space character and closes only after one, and not before a digit, so
  `$5 and $10` is no formula; a delimiter preceded by a backslash is escaped);
- the `!` closes a factorial (it follows a digit, a closing bracket, another `!`, or a one-letter
  variable as in `n!`) and the text goes on, after the spaces or newlines, with an operator, a digit,
  an opening or closing bracket, a backslash (a LaTeX command such as `\\cdot`) or a lower-case word:
  `The total is 9! / (5! * 2!) arrangements.` stays one sentence, `5! The next` is still cut;
- the text goes on with a formula tail: a closing bracket (`)`, `]`, `}`, `\\)`, `\\]`) or an operator
  (`= + - * / × · ÷ ^ < > ≤ ≥ ≈ ≠ ± − ⇒ →`, or a LaTeX operator such as `\\cdot`, `\\times`,
  `\\leq`). Not operators here: Markdown bold (`**Final Answer**`) and, where the text goes on on a new
  line, a list item (`- `, `* `, `+ `, `• `) or a sign (`-3 + 5 = 2`);
- the `.` ends an ellipsis (`...`) and the text goes on with a lower-case word on the same line;
- the `.` ends an abbreviation: `e.g.`, `i.e.`, `vs.`, `cf.`, `approx.`, `resp.`, `viz.`, `Mr.`, `Mrs.`,
  `Dr.`, `Prof.` never end a sentence; `etc.`, `al.`, `Eq.`, `Eqs.`, `Fig.`, `Figs.`, `No.`, `Nos.`,
  `Sec.`, `Ch.`, `Thm.`, `Def.`, `Prop.`, `Lem.`, `Cor.`, `Ex.`, `Vol.`, `pp.` do not when the text goes
  on with a digit, `(`, `#` or a lower-case word (`Eq. 3`, `etc. and`; but `No. That is wrong.` is
  cut); all case-insensitive;
- the `.` closes the number of a numbered list item (`2.` alone at the start of a line), which would
  otherwise end the previous item (a list whose items have no full stop becomes one sentence).

A blank-line cut is dropped only when the next paragraph opens with a formula tail (`\\n\\n≈ 0.9998`
after `e^x ≈ 1 + x`); a formula never spans a blank line. `!=` never holds a cut (the `!` is not followed
by a space), nor does a decimal (`0.05`). Consequence: the default cut positions are a subset of the
Thought Anchors cut positions, so every default sentence is a union of consecutive Thought Anchors
*pieces* (step 2 output) and every default boundary is a Thought Anchors piece boundary. It is **not**
always a boundary of the merged Thought Anchors *chunks* (step 3 output): in `We have 5! = 120. Then we
stop.` the Thought Anchors rules cut after `5!` and merge the short piece `= 120.` forward
(`We have 5!` | `= 120. Then we stop.`), while the default rules give `We have 5! = 120.` |
`Then we stop.` (22 of the 4,192 default boundaries of the 33 bundled traces are of this kind). For the
same reason a default split can, in contrived texts, have more sentences than the Thought Anchors one (a
dropped cut can keep a short piece from merging); on the bundled traces it has 4,225 against 4,485, and
fewer or as many in every trace. Labels of the chunks therefore carry over by character overlap
(`stream_widgets.data.BundledTrace.labels_for`), not by index.

Every `Sentence` keeps its character span in the **original** string passed in (half-open); a merged
sentence spans all its pieces, so its `text` is the original slice, which differs from the Thought Anchors
chunk (pieces joined by one space) in whitespace only. `token_spans` adds token spans from a tokenizer's
`offset_mapping`.

Cost: O(len(text)) memory and time (times a log factor for the math spans of the default rules); 100k
characters take about 4 ms with the Thought Anchors rules and 30 ms with the default ones.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_SENTENCE_RULES",
    "MIN_SENTENCE_CHARS",
    "SENTENCE_RULES",
    "Sentence",
    "split_sentences",
    "think_region",
    "token_spans",
]

MIN_SENTENCE_CHARS = 10
"""A piece shorter than this merges into its neighbour (Thought Anchors rule)."""

SENTENCE_RULES = ("default", "thought-anchors")
"""The names `split_sentences(rules=...)` accepts (module docstring)."""

DEFAULT_SENTENCE_RULES = "default"
"""The rule set used unless one is named: Thought Anchors' cuts minus those inside formulas."""

_PARAGRAPH_CUT = re.compile(r"(?=\n\n|\r\n\r\n)")  # cut after the first character of the blank line
_SENTENCE_CUT = re.compile(r"[.?!](?=[ \n])")  # cut after the punctuation mark

# --- the "default" rules: which punctuation cuts to drop (module docstring) ---
_OPERATORS = frozenset("=+-*/×·÷^<>≤≥≈≠±∓−⇒→⟹≡∙⋅")
_SIGNS = frozenset("-+−±")
_OPENING = frozenset("([{")
_CLOSING = frozenset(")]}")
_LATEX_OPERATOR = re.compile(
    r"\\(?:cdot|times|div|pm|mp|leq?|geq?|neq?|approx|equiv|sim|to|rightarrow|Rightarrow|implies|iff|right)"
    r"(?![A-Za-z])"
)
_LATEX_CLOSING = re.compile(r"\\[)\]}]")
_LIST_ITEM = re.compile(r"[-*+•][ \t]")  # a Markdown list item, when it opens a line
_BOLD = re.compile(r"\*\*\S")  # Markdown bold, not the power operator `**`
_SPACE = re.compile(r"\s*")
_BLANK_LINE = re.compile(r"\n\n|\r\n\r\n")
_NEVER_FINAL = frozenset(["e.g", "i.e", "vs", "cf", "approx", "resp", "viz", "mr", "mrs", "dr", "prof"])
_FINAL_BEFORE_CAPITAL = frozenset(
    ["etc", "al", "eq", "eqs", "fig", "figs", "no", "nos", "sec", "ch", "thm", "def", "prop", "lem", "cor"]
    + ["ex", "vol", "pp"]
)
_WORD_BEFORE_DOT = re.compile(r"(?<![A-Za-z0-9.])((?:[A-Za-z]\.)*[A-Za-z]+)$")
_LIST_NUMBER = re.compile(r"(?:^|\n)[ \t]*\d{1,3}$")
_MATH_OPENER = re.compile(r"\$\$|\\\[|\\\(|\$")
_MATH_CLOSER = {"$$": "$$", "\\[": "\\]", "\\(": "\\)", "$": "$"}


@dataclass(frozen=True)
class Sentence:
    """One CoT sentence: a Thought Anchors chunk, or (default rules) a union of consecutive pieces.

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


def split_sentences(text: str, rules: str = DEFAULT_SENTENCE_RULES) -> list[Sentence]:
    """Split a chain of thought into sentences by the named rule set (module docstring).

    Args:
        text: The trace, with or without the prompt and `<think>` tags.
        rules: `"default"` (no cut inside formulas, abbreviations or list numbers) or
            `"thought-anchors"` (the Thought Anchors chunk rules, exactly; use it to line sentences up
            with the bundled labels by index).

    Returns:
        The sentences in order, with character spans into `text`; `[]` for empty or blank reasoning.
        With either rule set the spans tile the reasoning (`think_region`): they are in order, do not
        overlap, only whitespace lies between them, and the first starts and the last ends the region.
        Every `"default"` boundary is also a boundary of the `"thought-anchors"` pieces before their
        10-character merge (not always of the merged chunks: module docstring). A `"default"` sentence
        other than the first never starts with an operator or a closing bracket; not operators here:
        Markdown bold (`**Final Answer**`) and, where the sentence opens a line, a list item (`- `,
        `* `, `+ `, `• `) or a sign (`-3 + 5 = 2`).

    Raises:
        ValueError: If `text` is not a `str`, or `rules` is not one of `SENTENCE_RULES`.
    """
    if not isinstance(text, str):
        raise ValueError(f"split_sentences expects a str, got {type(text).__name__}; decode bytes first")
    if rules not in SENTENCE_RULES:
        raise ValueError(f"unknown sentence rules {rules!r}; choose one of {', '.join(SENTENCE_RULES)}")
    region_start, region_end = think_region(text)
    if region_start == region_end:
        return []
    region = text[region_start:region_end]
    cuts = {m.start() + 1 for m in _PARAGRAPH_CUT.finditer(region)}
    if rules == "default":
        cuts = {cut for cut in cuts if _keeps_paragraph_cut(region, cut)}
    # "followed by a space or newline": the mark must not be the region's last character, which the
    # lookahead already guarantees.
    marks = [m.start() for m in _SENTENCE_CUT.finditer(region)]
    if rules == "default":
        math = _math_spans(region)
        math_starts = [start for start, _ in math]
        marks = [i for i in marks if not _inside(math, math_starts, i + 1) and _keeps_cut(region, i)]
    cuts.update(i + 1 for i in marks)
    bounds = [0, *sorted(cuts), len(region)]

    # pieces: [start, end, canonical length] with offsets into `text`
    pieces: list[list[int]] = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        start, end = _strip_span(text, region_start + lo, region_start + hi)
        if end > start:
            pieces.append([start, end, end - start])

    merged = _merge_short(pieces)
    return [Sentence(i, text[start:end], start, end) for i, (start, end, _) in enumerate(merged)]


def _keeps_cut(region: str, i: int) -> bool:
    """Whether the `"default"` rules keep the cut after the mark `region[i]` (`.`, `?` or `!` followed by
    whitespace, so `region` goes on after it: it is stripped). Math spans are checked by the caller."""
    mark = region[i]
    j = _SPACE.match(region, i + 1).end()  # the first character of what follows
    head = region[j]
    line_start = "\n" in region[i + 1 : j]
    if mark == "!" and _closes_factorial(region, i):
        # `9! / 3`, `9!\n= 362880`, `(n-1)! ways`, `2014! \\cdot 2013!`: the formula goes on
        if _starts_formula_tail(region, j, line_start=False) or head in _OPENING or head == "\\":
            return False
        if head.isdigit() or head.islower():
            return False
    if _starts_formula_tail(region, j, line_start):
        return False
    if mark != ".":
        return True
    if region[i - 2 : i] == ".." and not line_start and head.islower():
        return False  # `equals... let me see`
    word = _WORD_BEFORE_DOT.search(region, max(0, i - 24), i)
    if word is not None:
        word = word.group(1).lower()
        if word in _NEVER_FINAL:
            return False
        if word in _FINAL_BEFORE_CAPITAL and (head.isdigit() or head in "(#" or head.islower()):
            return False
    # `\n2. 200-299`: the number belongs to the item that follows it
    return _LIST_NUMBER.search(region, max(0, i - 40), i) is None


def _keeps_paragraph_cut(region: str, i: int) -> bool:
    """Whether the `"default"` rules keep the blank-line cut after `region[i]` (the blank line's first
    character): not when the next paragraph goes on with a formula (`\\n\\n≈ 0.9998`)."""
    return not _starts_formula_tail(region, _SPACE.match(region, i).end(), line_start=True)


def _starts_formula_tail(region: str, j: int, line_start: bool) -> bool:
    """Whether the text from `region[j]` on continues a formula: it opens with a closing bracket or an
    operator. Not an operator: Markdown bold (`**Final Answer**`) and, at the start of a line, a list
    item (`- `, `* `, `+ `, `• `) or a sign (`-3 + 5 = 2`, `+1`)."""
    head = region[j]
    if head in _CLOSING or _LATEX_CLOSING.match(region, j):
        return True
    if head not in _OPERATORS and not _LATEX_OPERATOR.match(region, j):
        return False
    if _BOLD.match(region, j):
        return False
    return not (line_start and (head in _SIGNS or _LIST_ITEM.match(region, j)))


def _closes_factorial(region: str, i: int) -> bool:
    """Whether the `!` at `region[i]` reads as a factorial: after a digit, a closing bracket, another `!`
    (`(2k-1)!!`) or a one-letter variable (`n!`, not `Yes!`)."""
    if i == 0:
        return False
    before = region[i - 1]
    if before.isdigit() or before in ")]}!":
        return True
    return before.isalpha() and (i < 2 or not region[i - 2].isalpha())


def _math_spans(region: str) -> list[tuple[int, int]]:
    """Half-open spans of the math in `region` (`$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`), in order.

    A pair counts only if its closer is the first unescaped one after the opener and no blank line lies
    between them; a `$` opens before a non-space character only, and closes after a non-space character
    and not before a digit (so `$5 and $10` holds no math). O(len(region) log len(region)).
    """
    blanks = [m.start() for m in _BLANK_LINE.finditer(region)]
    closers = {
        closer: [m.start() for m in re.finditer(re.escape(closer), region) if not _escaped(region, m.start())]
        for closer in set(_MATH_CLOSER.values())
    }
    spans: list[tuple[int, int]] = []
    pos = 0
    while (m := _MATH_OPENER.search(region, pos)) is not None:
        begin, opened, opener = m.start(), m.end(), m.group()
        pos = opened
        if _escaped(region, begin):
            pos = begin + 1
            continue
        if opener == "$" and (opened == len(region) or region[opened].isspace()):
            continue
        closer = _MATH_CLOSER[opener]
        positions = closers[closer]
        k = bisect.bisect_left(positions, opened)
        if k == len(positions):
            continue
        close = positions[k]
        if opener == "$" and (region[close - 1].isspace() or region[close + 1 : close + 2].isdigit()):
            continue
        b = bisect.bisect_left(blanks, opened)
        if b < len(blanks) and blanks[b] < close:
            continue
        spans.append((begin, close + len(closer)))
        pos = close + len(closer)
    return spans


def _escaped(region: str, i: int) -> bool:
    """Whether `region[i]` is escaped by an odd number of backslashes before it."""
    n = 0
    while i - n - 1 >= 0 and region[i - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def _inside(spans: list[tuple[int, int]], starts: list[int], cut: int) -> bool:
    """Whether position `cut` lies strictly inside one of `spans` (`starts` are their starts)."""
    k = bisect.bisect_left(starts, cut) - 1
    return k >= 0 and cut < spans[k][1]


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
