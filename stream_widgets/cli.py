"""The `stream-widgets` command line: one sub-command per task.

Each sub-command is a `_cmd_<name>(args)` function below plus its parser in `_build_parser`; the work
itself lives in the library modules, so the CLI only parses, checks, calls and prints. Building the
parser imports nothing heavy (no torch): `stream-widgets --help` answers at once.

Inputs and outputs are checked before any work: a text argument that looks like a file name but names
no file, a folder where a file is expected, an output folder that cannot be written, a bad config value,
all end with ``stream-widgets: error: ...`` and exit status 2, not a traceback after the model ran.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path

from stream_widgets import __version__
from stream_widgets.config import MAX_BLOCK, MAX_TOKENS, MAX_TOP_K, StreamConfig

__all__ = ["main"]

# black-box importance of the bundled traces shown beside each anchor
_EVIDENCE_COLUMNS = ("counterfactual_importance_kl", "resampling_importance_accuracy")
_MODEL_HELP = (
    "qwen2.5-coder-0.5b (opt-in packaged model, 32k context), a local model folder, a .gguf file or a "
    "locally cached hub id (default: the embedded SmolLM2-135M-Instruct)"
)
_SOURCE_HELP = (
    "a UTF-8 text file, - for standard input, or a bundled trace name (`stream-widgets list`); text "
    "itself goes in --text"
)
DEMO_TRACE = "deepseek-r1-distill-qwen-14b/correct_base_solution/problem_2189"
# Suffixes of files people pass as text; an argument ending in one of them is a file name, never text.
_TEXT_SUFFIXES = (".txt", ".text", ".md", ".json", ".jsonl", ".csv", ".tsv", ".log", ".safetensors", ".cot")
_DEFAULTS = StreamConfig()


class _HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: ...)`` to every option that has a default worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "%(default)" in text
            or not action.option_strings
            or action.default in (None, False, argparse.SUPPRESS)
            or isinstance(action, argparse._VersionAction)
        ):
            return text
        return text + " (default: %(default)s)"


class _LibraryDefault:
    """A default that lives in a library module, looked up only when it is needed (help or use), so
    building the parser imports nothing heavy."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __str__(self) -> str:
        import importlib

        return str(getattr(importlib.import_module(self.module), self.name))


def _int_in(low: int, high: int | None = None):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
        if number < low or (high is not None and number > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high:,}]"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return number

    return parse


def _probability(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not (math.isfinite(number) and 0.0 <= number < 1.0):
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1), got {value}")
    return number


def _add_source(parser: argparse.ArgumentParser, help: str = _SOURCE_HELP) -> None:
    parser.add_argument("source", nargs="?", default=None, metavar="FILE", help=help)
    parser.add_argument("--text", default=None, help="the text itself, instead of FILE")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """The `StreamConfig` flags of `trace` and `corpus`."""
    knobs = {
        "q_block": ("queries per query block", 1, MAX_BLOCK),
        "k_block": ("keys per key block", 1, MAX_BLOCK),
        "top_k": ("key blocks the search keeps per query block", 1, MAX_TOP_K),
        "sink": ("leading tokens always kept", 0, MAX_TOKENS),
        "window": ("tokens before each query block always kept", 0, MAX_TOKENS),
    }
    for knob, (what, low, high) in knobs.items():
        parser.add_argument(
            f"--{knob.replace('_', '-')}",
            type=int,
            default=getattr(_DEFAULTS, knob),
            help=f"StreamConfig.{knob}: {what}, {low} to {high:,}",
        )
    parser.add_argument(
        "--search-width",
        type=int,
        default=None,
        help="StreamConfig.search_width: ranges the search keeps between rounds, >= top_k "
        "(default: top_k, the paper's search)",
    )
    parser.add_argument(
        "--score-rule",
        choices=("representative", "bound"),
        default=_DEFAULTS.score_rule,
        help="StreamConfig.score_rule: how the search scores a range of key blocks: representative (q.k "
        "with the range's centre block, the paper's rule) or bound (an upper bound over the whole range "
        "from per-dimension key maxima and minima)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-widgets",
        description="Sparse attention interpretability for long chain-of-thought traces.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)

    demo = command("demo", "trace, tag and report a bundled reasoning trace with the default model")
    demo.add_argument("--out", default="out/demo", help="output folder")
    demo.add_argument("--trace", default=DEMO_TRACE, help="bundled trace name (`stream-widgets list`)")
    demo.set_defaults(func=_cmd_demo)

    listing = command("list", "list the bundled reasoning traces (names for demo, trace, anchors, tag)")
    listing.set_defaults(func=_cmd_list)

    tracing = command("trace", "trace a text with Stream masks and save the trace")
    _add_source(tracing)
    tracing.add_argument("--out", required=True, help="trace file to write (.safetensors)")
    tracing.add_argument("--model", default=None, help=_MODEL_HELP)
    tracing.add_argument("--mode", choices=("observe", "sparse"), default="observe", help="attention mode")
    tracing.add_argument(
        "--max-tokens",
        type=_int_in(1),
        default=None,
        help="cut the text at the last sentence within this many tokens before tracing",
    )
    _add_config_flags(tracing)
    tracing.set_defaults(func=_cmd_trace)

    report = command("report", "write the phase-tag report of a saved trace")
    report.add_argument("trace", help="a trace file written by `stream-widgets trace` or Trace.save")
    report.add_argument(
        "--out", required=True, help="output folder for report.html, summary.json, sentences.csv"
    )
    report.set_defaults(func=_cmd_report)

    corpus = command(
        "corpus", "trace a folder of texts, a JSONL file or the bundled traces, resumably, one worker per GPU"
    )
    corpus.add_argument(
        "inputs",
        metavar="INPUTS",
        help="a folder of text files (.txt, .text, .md, .cot), a .jsonl file (one {id, text, group, labels} "
        "record per line, see stream_widgets.corpus.inputs) or 'bundled' for the bundled traces",
    )
    corpus.add_argument("--out", required=True, help="output folder (traces/, corpus.json); reruns resume")
    corpus.add_argument("--model", default=None, help=_MODEL_HELP)
    corpus.add_argument("--mode", choices=("observe", "sparse"), default="observe", help="attention mode")
    corpus.add_argument(
        "--max-tokens",
        type=_int_in(1),
        default=None,
        help="cut every text at the last sentence within this many tokens before tracing",
    )
    corpus.add_argument("--limit", type=_int_in(1), default=None, help="only the first N inputs")
    _add_config_flags(corpus)
    corpus.add_argument(
        "--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="model parameter dtype"
    )
    corpus.add_argument(
        "--device",
        default=None,
        help="cpu, cuda (every visible GPU) or cuda:N (default: every visible GPU, else the CPU)",
    )
    corpus.add_argument(
        "--workers",
        type=_int_in(1),
        default=None,
        help="worker processes (default: one per visible GPU; one on the CPU)",
    )
    corpus.add_argument(
        "--device-map",
        default=None,
        metavar="MAP",
        help="load the model with this accelerate device map in one worker: 'auto' spreads a model too "
        "large for one GPU over all of them; or a JSON object of module name -> device",
    )
    corpus.add_argument("--threads", type=_int_in(1), default=None, help="torch threads per worker")
    corpus.add_argument(
        "--report", action="store_true", help="then analyse the traces and write the corpus report"
    )
    corpus.set_defaults(func=_cmd_corpus)

    corpus_report = command(
        "corpus-report",
        "corpus receiver heads, anchors of every trace and the corpus report, from the traces of `corpus`",
    )
    corpus_report.add_argument("folder", metavar="DIR", help="the --out folder of `stream-widgets corpus`")
    corpus_report.add_argument(
        "--out", default=None, help="report folder (default: DIR/report); the heads go to DIR/receiver_heads"
    )
    corpus_report.add_argument(
        "--variant",
        choices=("raw", "depth", "distance"),
        default=_LibraryDefault("stream_widgets.vertical", "DEFAULT_VARIANT"),
        help="vertical-score variant",
    )
    corpus_report.add_argument(
        "--min-later",
        type=_int_in(1),
        default=_LibraryDefault("stream_widgets.vertical", "DEFAULT_MIN_LATER"),
        help="later sentences a sentence needs for a score",
    )
    corpus_report.add_argument("--heads", type=_int_in(1), default=20, help="receiver heads to average over")
    corpus_report.add_argument("--top", type=_int_in(1), default=5, help="anchors per trace")
    corpus_report.set_defaults(func=_cmd_corpus_report)

    anchors = command("anchors", "print the top thought anchors of a saved trace, a bundled trace or a text")
    _add_source(anchors, "a trace file (.safetensors, from Trace.save), " + _SOURCE_HELP)
    anchors.add_argument("--top", type=_int_in(1), default=5, help="how many anchors")
    anchors.add_argument(
        "--variant",
        choices=("raw", "depth", "distance"),
        default=_LibraryDefault("stream_widgets.anchors", "DEFAULT_VARIANT"),
        help="vertical-score variant",
    )
    anchors.add_argument("--heads", type=_int_in(1), default=20, help="receiver heads to average over")
    anchors.add_argument(
        "--trace-heads",
        action="store_true",
        help="pick the receiver heads from this trace alone (default: the model's corpus heads when they ship)",
    )
    anchors.add_argument(
        "--corpus",
        default=None,
        metavar="DIR",
        help="take the receiver heads from a corpus analysis (`stream-widgets corpus-report DIR`)",
    )
    anchors.add_argument(
        "--suppression",
        action="store_true",
        help="also compute each sentence's attention-suppression importance (one forward pass per sentence)",
    )
    anchors.add_argument(
        "--max-tokens",
        type=_int_in(1),
        default=None,
        help="cut a text at the last sentence within this many tokens before tracing",
    )
    anchors.add_argument("--model", default=None, help="model for texts: " + _MODEL_HELP)
    anchors.add_argument(
        "--json", default=None, metavar="PATH", help="also write the anchors as JSON to PATH"
    )
    anchors.set_defaults(func=_cmd_anchors)

    importance = command(
        "importance",
        "black-box importance of every sentence, computed with the model (Thought Anchors' measures)",
    )
    _add_source(importance)
    importance.add_argument(
        "--kind",
        choices=("forced", "resampling", "counterfactual"),
        default="forced",
        help="which importance",
    )
    importance.add_argument("--model", default=None, help=_MODEL_HELP)
    importance.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    importance.add_argument("--answer", default=None, help="the correct answer, for the accuracy columns")
    importance.add_argument(
        "--samples", type=_int_in(1), default=10, help="continuations per prefix (resampling)"
    )
    importance.add_argument("--seed", type=int, default=0, help="sampling seed")
    importance.add_argument("--max-new-tokens", type=_int_in(1), default=512, help="tokens per continuation")
    importance.add_argument("--batch-size", type=_int_in(1), default=None, help="continuations per batch")
    importance.add_argument(
        "--rules", choices=("default", "thought-anchors"), default="default", help="sentence rules"
    )
    importance.add_argument("--json", default=None, metavar="PATH", help="write the scores as JSON to PATH")
    importance.set_defaults(func=_cmd_importance)

    tag = command("tag", "tag every CoT sentence with its reasoning function (spaCy tagger)")
    _add_source(tag)
    tag.add_argument("--json", action="store_true", help="print JSON instead of a table")
    tag.add_argument(
        "--min-confidence",
        type=_probability,
        default=0.0,
        help="below this top probability the tag is 'unknown'; in [0, 1)",
    )
    tag.add_argument("--width", type=_int_in(10), default=80, help="characters of sentence text shown")
    tag.set_defaults(func=_cmd_tag)

    ruler = command("ruler", "score RULER needle cases, dense vs Stream-sparse")
    ruler.add_argument("--model", default=None, help=_MODEL_HELP)
    ruler.add_argument(
        "--lengths", type=_int_in(1), nargs="+", default=[1024], help="prompt lengths in tokens"
    )
    ruler.add_argument("--cases", type=_int_in(1), default=1, help="cases per (length, kind)")
    ruler.add_argument(
        "--kinds",
        nargs="+",
        choices=("single", "multikey", "multivalue", "multiquery"),
        default=["single", "multikey", "multivalue", "multiquery"],
        help="case kinds",
    )
    ruler.add_argument("--haystack", default="filler", choices=["filler", "traces"], help="haystack text")
    ruler.add_argument("--seed", type=int, default=0, help="case seed")
    ruler.add_argument("--routes", action="store_true", help="also find and store every case's needle route")
    ruler.add_argument("--out", required=True, help="JSON file for the per-case results and the table")
    ruler.set_defaults(func=_cmd_ruler)
    return parser


# ----------------------------------------------------------------- inputs
def _exists(path: str) -> bool:
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):  # a name too long, or with a NUL byte: not a file
        return False


def _looks_like_path(argument: str) -> bool:
    """True for what is meant as a file name rather than text: a text-file suffix (``notes_typo.txt``,
    ``my notes.md``), one word with a path separator or a dot (``drafts/cot``, ``run.2``), or a
    single line that starts like a path (``~/My Documents/cot``). Text with spaces and a ``/`` in it
    (``n(n+1)/2``, ``</think>``) is text."""
    separators = "/" + os.sep + (os.altsep or "")
    if argument.lower().endswith(_TEXT_SUFFIXES):
        return True
    if not any(c.isspace() for c in argument):
        return "." in argument or any(c in argument for c in separators)
    return "\n" not in argument and argument.startswith(("/", "~/", "./", "../"))


def _check_utf8(text: str, what: str) -> str:
    """`text` if it encodes as UTF-8; else a `ValueError` saying where it is not (argv is decoded with
    surrogate escapes, so bytes that are not UTF-8 arrive as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        char = ord(text[error.start])
        found = (
            f"the byte 0x{char - 0xDC00:02x}, which is not UTF-8,"
            if 0xDC80 <= char <= 0xDCFF
            else f"a lone surrogate U+{char:04X}"
        )
        raise ValueError(
            f"{what} holds {found} at character {error.start}: pass UTF-8 text (in a file, through "
            "standard input with -, or with --text)"
        ) from None
    return text


def _decode(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{what} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}): convert it, "
            "e.g. with `iconv -t utf-8`"
        ) from None


def _bundled_name(argument: str) -> str | None:
    """The bundled trace `argument` names (in full or by a unique ending), or None.

    Raises:
        ValueError: If it names several bundled traces.
    """
    from stream_widgets.data import list_bundled_traces

    names = list_bundled_traces()
    if argument in names:
        return argument
    matches = [n for n in names if n.endswith("/" + argument.strip("/"))]
    if len(matches) > 1:
        raise ValueError(
            f"{argument!r} names several bundled traces ({', '.join(matches)}): give a full name"
        )
    return matches[0] if matches else None


@dataclasses.dataclass
class _Input:
    text: str
    bundled: object | None = None  # the BundledTrace the text came from (its labels carry over)
    trace_file: Path | None = None  # a saved trace (anchors only)


def _read_input(args, *, traces: bool = False) -> _Input:
    """The text a command works on: from FILE, standard input (-), a bundled trace, or --text.

    Raises:
        ValueError: For both or neither of FILE and --text, a missing file (an argument that looks like a
            file name), a folder, or text that is not UTF-8.
    """
    source, text = args.source, args.text
    if (source is None) == (text is None):
        raise ValueError(
            "give the text as FILE, as - (standard input) or with --text TEXT"
            if source is None
            else "give either FILE or --text, not both"
        )
    if text is not None:
        return _Input(_check_utf8(text, "--text"))
    if source == "-":
        return _Input(_decode(sys.stdin.buffer.read(), "standard input"))
    if _exists(source):
        path = Path(source)
        if path.is_dir():
            raise ValueError(f"{source} is a folder: pass a text file, - for standard input, or --text TEXT")
        if traces and path.suffix == ".safetensors":
            return _Input("", trace_file=path)
        try:
            return _Input(_decode(path.read_bytes(), str(path)))
        except PermissionError:
            raise ValueError(f"cannot read {source}: permission denied") from None
    name = _bundled_name(source)
    if name is not None:
        from stream_widgets.data import load_bundled_trace

        bundled = load_bundled_trace(name)
        return _Input(bundled.full_cot, bundled=bundled)
    _check_utf8(source, "the argument")
    if _looks_like_path(source):
        raise ValueError(
            f"no such file: {source!r} (nor a bundled trace, see `stream-widgets list`); to trace these "
            f"characters as text, pass --text {source!r}"
        )
    return _Input(source)


# ----------------------------------------------------------------- outputs, checked before the work
def _writable_ancestor(path: Path, flag: str) -> None:
    """Raise `ValueError` unless the nearest existing folder above `path` accepts new files."""
    from stream_widgets.storage import temp_path

    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{flag} {path}: {ancestor} is a file, not a folder")
    probe = temp_path(ancestor / "probe")
    try:
        probe.touch(exist_ok=False)
    except OSError as error:
        raise ValueError(f"{flag} {path}: cannot write in {ancestor} ({error.strerror})") from None
    probe.unlink()


def _output_file(value: str, flag: str, example: str) -> Path:
    if not value:
        raise ValueError(f"{flag} is empty: give a file name, e.g. {flag} {example}")
    path = Path(os.path.realpath(value))
    if path.is_dir():
        raise ValueError(f"{flag} {value} is a folder: give a file name, e.g. {flag} {Path(value) / example}")
    _writable_ancestor(path, flag)
    return Path(value)


def _output_folder(value: str, flag: str) -> Path:
    if not value:
        raise ValueError(f"{flag} is empty: give a folder, e.g. {flag} out/report")
    path = Path(os.path.realpath(value))
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {value} is a file: give a folder")
    _writable_ancestor(path / "report.html", flag)
    return Path(value)


# ----------------------------------------------------------------- printing
def _note_if_nothing_pruned(result) -> None:
    if result.masks and float(result.sparsity().max()) == 0.0:
        config = result.config
        print(
            f"note: this config keeps every key block of this {result.seq_len}-token text (sparsity 0%): "
            f"the sinks, the window and top_k={config.top_k} blocks of {config.k_block} tokens cover it. "
            "Lower --top-k or trace a longer text to prune.",
            file=sys.stderr,
        )


def _print_summary(data, html) -> None:
    print(f"report: {html}")
    print(f"        {html.parent / 'summary.json'}, {html.parent / 'sentences.csv'}")
    meta = data.meta
    print(
        f"{meta['model']}: {meta['tokens']} tokens, {len(data.sentences)} sentences, sparsity {meta['sparsity']:.1%}"
    )
    where = {"corpus": "the model's corpus", "trace": "this trace", "given": "the given list"}
    source = meta.get("receiver_heads_source", "given")
    print(
        f"top thought anchors ({meta['score_variant']} score over {len(data.receiver_heads)} receiver heads"
        f" of {where.get(source, source)}), with the evidence beside each:"
    )
    _print_anchor_rows(
        [
            (
                i,
                float(data.anchor_scores[i]),
                {n: float(v[i]) for n, v in data.evidence.items()},
                data.tags[i],
                data.sentences[i],
            )
            for i in data.top_anchors(5)
        ]
    )


_SHORT_NAMES = {
    "position baseline": "position",
    "suppression importance": "suppression",
    "counterfactual_importance_kl": "counterfact. KL",
    "resampling_importance_accuracy": "resampl. acc.",
}


def _print_anchor_rows(rows: list[tuple[int, float, dict, str, str]]) -> None:
    """One line per anchor: index, score, its evidence columns, tag and the start of the sentence."""
    if not rows:
        return
    names = list(rows[0][2])
    header = "".join(f"{_SHORT_NAMES.get(n, n)[:15]:>16}" for n in names)
    print(f"  {'#':>5} {'score':>8}{header}  {'tag':<24} sentence")
    for index, score, evidence, tag, text in rows:
        values = "".join(f"{evidence[n]:16.4g}" for n in names)
        print(f"  [{index:>3}] {score:8.4f}{values}  {tag:<24} {text.replace(chr(10), ' ')[:60]}")


# ----------------------------------------------------------------- commands
def _cmd_demo(args) -> int:
    from stream_widgets.data import load_bundled_trace
    from stream_widgets.models import load_model
    from stream_widgets.tracer import trace
    from stream_widgets.views import explore_data, write_report

    out = _output_folder(args.out, "--out")
    bundled = load_bundled_trace(args.trace)
    print(f"loading the default model and tracing {bundled.name} ...", flush=True)
    model, tokenizer = load_model()
    result = trace(model, tokenizer, bundled.full_cot, progress=True)
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "trace.safetensors")
    labels = bundled.labels_for(result.sentences)  # the bundled black-box importance, per traced sentence
    data = explore_data(result, evidence={c: labels.importance[c] for c in _EVIDENCE_COLUMNS})
    _print_summary(data, write_report(data, out))
    return 0


def _cmd_list(args) -> int:
    from stream_widgets.data import list_bundled_traces, load_bundled_trace

    names = list_bundled_traces()
    width = max(map(len, names), default=0)
    print(f"{'name':<{width}}  sentences  characters")
    for name in names:
        bundled = load_bundled_trace(name)
        print(f"{name:<{width}}  {len(bundled.chunks):>9}  {len(bundled.full_cot):>10,}")
    print(f"{len(names)} bundled traces (Thought Anchors, MIT); pass a name, or its last part, to a command")
    return 0


def _config(args) -> StreamConfig:
    knobs = ("q_block", "k_block", "top_k", "sink", "window", "search_width", "score_rule")
    return StreamConfig(**{k: getattr(args, k) for k in knobs})


def _cmd_trace(args) -> int:
    config = _config(args)  # a bad value fails here, before the model loads
    out = _output_file(args.out, "--out", "trace.safetensors")
    text = _read_input(args).text
    from stream_widgets.dense_reference import truncate_to_tokens
    from stream_widgets.models import load_model
    from stream_widgets.tracer import trace

    model, tokenizer = load_model(args.model)
    if args.max_tokens is not None:
        text = truncate_to_tokens(tokenizer, text, args.max_tokens)
    result = trace(model, tokenizer, text, config, mode=args.mode, progress=True)
    written = result.save(out)
    print(f"trace: {written}")
    print(f"{result!r}")
    _note_if_nothing_pruned(result)
    return 0


def _cmd_report(args) -> int:
    from tqdm.auto import tqdm

    out = _output_folder(args.out, "--out")
    with tqdm(total=3, desc="report", unit="step", file=sys.stderr, leave=False) as bar:
        bar.set_postfix_str("reading the trace")
        from stream_widgets.traces import Trace

        result = Trace.load(args.trace)
        bar.update()
        bar.set_postfix_str(f"tagging {len(result.sentences)} sentences, scoring anchors")
        from stream_widgets.views import explore_data

        data = explore_data(result)
        bar.update()
        bar.set_postfix_str("writing the report")
        from stream_widgets.views import write_report

        html = write_report(data, out)
        bar.update()
    _print_summary(data, html)
    return 0


def _tagger_tags(result) -> tuple[list[str] | None, str | None]:
    """The shipped tagger's tag of every sentence of a trace, or None and why not.

    The tagger splits the trace's text itself; its tags are used only when its sentences are exactly the
    trace's (same character spans).
    """
    import tagging  # imports spaCy: only here

    if not result.sentences:
        return None, "the trace has no sentences: trace the text with sentences=True"
    doc = tagging.load()(result.text)
    spans = list(doc.spans["cot"])
    if len(spans) != len(result.sentences):
        return None, (
            f"the tagger found {len(spans)} sentences where the trace has {len(result.sentences)}, so its "
            "tags do not line up with the trace's sentences"
        )
    if [(s.start_char, s.end_char) for s in spans] != [(s.char_start, s.char_end) for s in result.sentences]:
        return None, "the tagger's sentence boundaries differ from the trace's, so its tags do not line up"
    return [span._.function_tag for span in spans], None


def _cmd_anchors(args) -> int:
    import json

    from stream_widgets.anchors import thought_anchors

    if args.json is not None:
        json_out = _output_file(args.json, "--json", "anchors.json")
    source = _read_input(args, traces=True)
    model = tokenizer = None
    if source.trace_file is not None:
        from stream_widgets.traces import Trace

        for flag, value in (("--max-tokens", args.max_tokens), ("--model", args.model)):
            if value is not None:
                raise ValueError(f"{flag} applies to texts; {source.trace_file} is a saved trace")
        result = Trace.load(source.trace_file)
    else:
        from stream_widgets.dense_reference import truncate_to_tokens
        from stream_widgets.models import load_model
        from stream_widgets.tracer import trace

        model, tokenizer = load_model(args.model)
        text = source.text
        if args.max_tokens is not None:
            text = truncate_to_tokens(tokenizer, text, args.max_tokens)
        result = trace(model, tokenizer, text, progress=True)
    suppression = None
    if args.suppression:
        from stream_widgets.suppression import suppression_matrix

        if model is None:
            from stream_widgets.models import load_model

            model, tokenizer = load_model(args.model or result.model_id)
        suppression = suppression_matrix(model, tokenizer, result.text, progress=True)
    importance, tags, origin = None, None, None
    if source.bundled is not None:  # the bundled labels, carried over to the traced sentences
        labels = source.bundled.labels_for(result.sentences)
        importance = {column: labels.importance[column] for column in _EVIDENCE_COLUMNS}
        tags, origin = list(labels.function_tags), "the bundled labels"
    else:
        tags, note = _tagger_tags(result)
        origin = "the shipped tagger"
        if note:
            print(f"note: {note}; tags are not shown", file=sys.stderr)
    variant = str(args.variant)
    heads = "trace" if args.trace_heads else None
    if args.corpus is not None:
        if args.trace_heads:
            raise ValueError("give --corpus DIR or --trace-heads, not both")
        from stream_widgets.corpus import load_corpus_heads

        found_heads = load_corpus_heads(args.corpus, variant)
        if found_heads.model_id != result.model_id:
            raise ValueError(
                f"the corpus heads in {args.corpus} are of {found_heads.model_id}, the trace is of "
                f"{result.model_id}: receiver heads belong to one model"
            )
        heads = found_heads.heads(args.heads)
    found = thought_anchors(
        result,
        heads,
        top=args.top,
        variant=variant,
        top_heads=args.heads,
        suppression=suppression,
        importance=importance,
    )
    print(
        f"{result.model_id}: {result.seq_len} tokens, {len(result.sentences)} sentences, "
        f"sparsity {float(result.sparsity().mean()):.1%}"
    )
    if not found:
        print("no sentence can be scored: the trace has too few sentences for its later ones to look back")
    else:
        where = {
            "corpus": "the model's corpus",
            "trace": "this trace",
            "given": f"the corpus in {args.corpus}" if args.corpus else "the given list",
        }
        print(
            f"top {len(found)} thought anchors ({variant} score over {len(found[0].receiver_heads)} receiver "
            f"heads of {where[found[0].heads_from]}"
            + (f"; tags from {origin}" if tags is not None else "")
            + "):"
        )
        _print_anchor_rows(
            [
                (a.index, a.score, a.evidence, tags[a.index] if tags is not None else "-", a.text)
                for a in found
            ]
        )
    _note_if_nothing_pruned(result)
    if args.json is not None:
        from stream_widgets.storage import write_file

        records = [
            {
                **dataclasses.asdict(anchor.sentence),
                "score": anchor.score,
                "function_tag": None if tags is None else tags[anchor.index],
                "evidence": {k: (None if v != v else v) for k, v in anchor.evidence.items()},
            }
            for anchor in found
        ]
        document = {
            "model_id": result.model_id,
            "variant": variant,
            "receiver_heads": [list(h) for h in found[0].receiver_heads] if found else [],
            "heads_from": found[0].heads_from if found else None,
            "anchors": records,
        }
        json_out.parent.mkdir(parents=True, exist_ok=True)
        write_file(json_out, json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        print(f"anchors: {json_out}")
    return 0


def _cmd_corpus(args) -> int:
    config = _config(args)  # a bad value fails here, before the inputs are read or a model loads
    out = _output_folder(args.out, "--out")
    from stream_widgets.corpus import corpus_report, run_corpus

    device_map = args.device_map
    if device_map is not None and device_map.isdigit():
        device_map = int(device_map)
    elif device_map is not None and device_map.lstrip().startswith("{"):
        import json

        try:
            device_map = json.loads(device_map)
        except ValueError as error:
            raise ValueError(f"--device-map {device_map!r} is not a JSON object ({error})") from None
    run = run_corpus(
        args.inputs,
        out,
        model=args.model,
        config=config,
        mode=args.mode,
        max_tokens=args.max_tokens,
        limit=args.limit,
        dtype=args.dtype,
        device=args.device,
        workers=args.workers,
        device_map=device_map,
        threads=args.threads,
    )
    summary = run.to_dict()["summary"]
    rate = summary["traces_per_minute"]
    print(
        f"corpus: {out / 'corpus.json'}: {summary['done']} of {summary['traces']} traces done, "
        f"{summary['failed']} failed, {summary['pending']} pending; {summary['tokens']:,} tokens"
        + (f", {rate:.2f} traces per minute of tracing" if rate else "")
    )
    for entry in run.failed:
        print(f"  failed: {entry.id}: {entry.error}")
    if args.report:
        _print_corpus_report(corpus_report(out), out)
    return 0


def _print_corpus_report(html, folder) -> None:
    import json

    summary = json.loads((html.parent / "summary.json").read_text(encoding="utf-8"))
    reliability = summary["split_half_reliability"]
    print(f"report: {html}")
    print(f"        {html.parent} (summary.json, sentences.csv, tags.csv, correlations.csv, traces.csv)")
    print(f"receiver heads: {Path(folder) / 'receiver_heads'}")
    r = reliability["mean_r"]
    print(
        f"{summary['traces']} traces of {summary['model_id']}; top receiver heads "
        + ", ".join(f"L{layer}H{head}" for layer, head in summary["receiver_heads"][:5])
        + "; split-half reliability "
        + (f"r = {r:.3f} over {reliability['groups']} groups" if r is not None else "n/a (one group)")
    )
    if summary["left_out"]:
        print(f"left out: {len(summary['left_out'])} traces (see summary.json)")
    for row in summary["correlations"]:
        score, baseline = row["anchor_score"], row["position_baseline"]
        print(
            f"  Spearman with {row['column']}: anchor score {_signed(score['mean_per_trace'])} per trace, "
            f"{_signed(score['pooled'])} pooled; position baseline {_signed(baseline['mean_per_trace'])}, "
            f"{_signed(baseline['pooled'])}"
        )


def _signed(value) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def _cmd_corpus_report(args) -> int:
    folder = Path(args.folder)
    if not (folder / "corpus.json").is_file():
        raise ValueError(f"{folder} has no corpus.json: give the --out folder of `stream-widgets corpus`")
    out = _output_folder(args.out, "--out") if args.out is not None else None
    from stream_widgets.corpus import corpus_report

    html = corpus_report(
        folder,
        out,
        variant=str(args.variant),
        min_later=int(str(args.min_later)),
        top_heads=args.heads,
        top=args.top,
    )
    _print_corpus_report(html, folder)
    return 0


def _cmd_tag(args) -> int:
    import json

    import tagging  # imports spaCy: only here
    from tagging.tags import FUNCTION_TAGS

    text = _read_input(args).text
    nlp = tagging.load()
    nlp.get_pipe("function_tagger").min_confidence = args.min_confidence
    doc = nlp(text)
    rows = []
    for span in doc.spans["cot"]:
        sentence = span._.cot_sentence
        scores = span._.function_tag_scores
        rows.append(
            {
                "index": sentence.index,
                "char_start": sentence.char_start,
                "char_end": sentence.char_end,
                "tag": span._.function_tag,
                # the top probability of the 8 tags: that of the tag shown, or for 'unknown' the best one's
                "confidence": round(max(scores[t] for t in FUNCTION_TAGS), 4),
                "scores": {tag: round(p, 4) for tag, p in scores.items()},
                "text": sentence.text,
            }
        )
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    if not rows:
        print("no sentences found (empty text?)", file=sys.stderr)
        return 0
    for row in rows:
        text = " ".join(row["text"].split())
        if len(text) > args.width:
            text = text[: args.width - 3] + "..."
        print(f"{row['index']:4d}  {row['tag']:<22s}  {row['confidence']:.2f}  {text}")
    return 0


def _cmd_ruler(args) -> int:
    import json

    out = _output_file(args.out, "--out", "ruler.json")
    from stream_widgets.models import load_model
    from stream_widgets.ruler import format_table, run_ruler, summarize
    from stream_widgets.storage import write_file

    model, tokenizer = load_model(args.model)
    results = run_ruler(
        model,
        tokenizer,
        args.lengths,
        args.kinds,
        args.cases,
        haystack=args.haystack,
        seed=args.seed,
        route=args.routes,
    )
    rows = summarize(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_file(out, json.dumps({"table": rows, "cases": [r.to_dict() for r in results]}, indent=1))
    print(format_table(rows))
    print(f"results: {out}")
    return 0


def _cmd_importance(args) -> int:
    import json

    from stream_widgets.importance import run_command

    json_out = _output_file(args.json, "--json", "importance.json") if args.json is not None else None
    source = _read_input(args)
    result = run_command(args, source.text, args.answer)
    if json_out is not None:
        from stream_widgets.storage import write_file

        json_out.parent.mkdir(parents=True, exist_ok=True)
        write_file(json_out, json.dumps(result, indent=1))
        print(f"importance: {json_out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `stream-widgets` command."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return status
    except BrokenPipeError:
        # The reader went away (`stream-widgets tag ... | head`): stop quietly, as `cat` or `grep` do.
        # Point stdout at /dev/null so the interpreter's last flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the broken pipe
    except (ValueError, OSError, KeyError) as error:
        # KeyError's str() quotes its message (unknown bundled trace names): print the message itself
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        if isinstance(error, OSError) and error.filename is not None and error.strerror:
            message = f"{error.filename}: {error.strerror}"
        print(f"stream-widgets: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
