"""Tag corrections: a user's fixes of the tagger's function tags, kept as JSON beside a report.

The explorer (`Explorer.correct_tag`, its tag dropdown) and the report (its "correct tag" picker and
"download corrections" button: a page opened from disk cannot write files) make the same file,
`tag_corrections.json`. `write_report` re-applies the file it finds in its output folder when the report
is rebuilt there, and `python -m tagging.train --corrections FILE...` takes such files as extra
labelled data.

Schema (JSON object, UTF-8):

    {
      "format": "stream-widgets/tag-corrections",
      "version": 1,
      "text_sha256": "<hex SHA-256 of the trace text (UTF-8)>",
      "sentences": ["<every sentence of the trace, in order>", ...],
      "corrections": [
        {"index": 12, "char_start": 340, "char_end": 391, "sentence": "<its text>",
         "tag": "self_checking", "tagger_tag": "active_computation"}
      ]
    }

`sentences` gives training the corrected sentences' context (the tagger reads neighbours); a correction
is matched to a sentence by its character span and text, so corrections survive a rebuild of the same
trace and are skipped (with a warning) where the sentences changed. Pure Python: no numpy, no Bokeh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream_widgets import storage

if TYPE_CHECKING:
    from stream_widgets.views.data import ExploreData

__all__ = [
    "CORRECTIONS_FILE",
    "FORMAT",
    "apply_corrections",
    "corrections_document",
    "load_corrections",
    "save_corrections",
]

FORMAT = "stream-widgets/tag-corrections"
VERSION = 1
#: The corrections file's name inside a report folder.
CORRECTIONS_FILE = "tag_corrections.json"


def text_sha256(text: str) -> str:
    """Hex SHA-256 of `text` in UTF-8 (which trace a corrections file belongs to)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def corrections_document(data: ExploreData) -> dict[str, Any]:
    """The corrections JSON of `data`: every sentence whose tag differs from the tagger's."""
    tagger = data.tagger_tags or data.tags
    corrections = [
        {
            "index": i,
            "char_start": data.char_spans[i][0],
            "char_end": data.char_spans[i][1],
            "sentence": data.sentences[i],
            "tag": data.tags[i],
            "tagger_tag": tagger[i],
        }
        for i in range(data.n_sentences)
        if data.tags[i] != tagger[i]
    ]
    return {
        "format": FORMAT,
        "version": VERSION,
        "text_sha256": text_sha256(data.text),
        "sentences": list(data.sentences),
        "corrections": corrections,
    }


def save_corrections(document: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a corrections document to `path` (a folder gets `tag_corrections.json` inside), atomically."""
    check_corrections(document, str(path))
    path = Path(path)
    if path.is_dir():
        path = path / CORRECTIONS_FILE
    return storage.write_file(path, corrections_json(document))


def corrections_json(document: dict[str, Any]) -> str:
    """A corrections document as the text of its JSON file."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def load_corrections(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a corrections file (or a report folder's `tag_corrections.json`)."""
    path = Path(path)
    if path.is_dir():
        path = path / CORRECTIONS_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no tag corrections file at {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a tag corrections file (not JSON: {error})") from None
    check_corrections(document, str(path))
    return document


def check_corrections(document: Any, where: str) -> None:
    """Raise `ValueError` naming `where` unless `document` follows the schema of this module."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{where} is not a tag corrections file (expected format {FORMAT!r})")
    if document.get("version") != VERSION:
        raise ValueError(f"{where} has version {document.get('version')!r}; this version reads {VERSION}")
    sentences, corrections = document.get("sentences"), document.get("corrections")
    if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
        raise ValueError(f"{where}: 'sentences' must be a list of strings")
    if not isinstance(corrections, list):
        raise ValueError(f"{where}: 'corrections' must be a list")
    keys = {"index": int, "char_start": int, "char_end": int, "sentence": str, "tag": str}
    for k, item in enumerate(corrections):
        if not isinstance(item, dict) or any(
            not isinstance(item.get(key), kind) for key, kind in keys.items()
        ):
            raise ValueError(
                f"{where}: corrections[{k}] needs {sorted(keys)} (index/char_* int, sentence/tag str)"
            )
        if not 0 <= item["index"] < len(sentences) or sentences[item["index"]] != item["sentence"]:
            raise ValueError(f"{where}: corrections[{k}] does not match sentences[{item['index']}]")


def apply_corrections(data: ExploreData, document: dict[str, Any]) -> ExploreData:
    """`data` with the corrections of `document` applied (matched by character span and sentence text).

    The tagger's tags move to `tagger_tags` (kept from an earlier application); corrections whose
    sentence is not in `data` are skipped with one warning that says how many.
    """
    check_corrections(document, "the corrections document")
    by_span = {(start, end): i for i, (start, end) in enumerate(data.char_spans)}
    tags = list(data.tags)
    skipped = 0
    for item in document["corrections"]:
        i = by_span.get((item["char_start"], item["char_end"]))
        if i is None or data.sentences[i] != item["sentence"]:
            skipped += 1
            continue
        tags[i] = item["tag"]
    if skipped:
        warnings.warn(
            f"{skipped} of {len(document['corrections'])} tag corrections match no sentence of this trace "
            "(other text or other sentence rules) and were not applied",
            stacklevel=2,
        )
    return dataclasses.replace(data, tags=tags, tagger_tags=list(data.tagger_tags or data.tags))
