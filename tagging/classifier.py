"""The function-tag classifier: `SentenceFeaturizer` + multinomial logistic regression (scikit-learn).

Training labels are each sentence's **first** function tag (every bundled chunk has exactly one).
Serialised without pickle: `classifier.json` (config, tags, vocabularies) and `weights.npz` (IDF
weights, coefficients, intercepts, float32), a few MB.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from tagging.errors import Errors, TaggingError
from tagging.features import FeatureConfig, SentenceFeaturizer
from tagging.tags import FUNCTION_TAGS

__all__ = ["ClassifierConfig", "FunctionTagClassifier"]

_FORMAT = "stream-widgets-function-tagger/1"


@dataclass(frozen=True)
class ClassifierConfig:
    """Settings of the logistic regression.

    Attributes:
        C: Inverse L2 regularisation strength, > 0; default 3.0 (best of 1, 3, 10 in grouped CV).
        class_weight: `"balanced"` (reweights rare tags: higher macro-F1, lower accuracy) or `"none"`.
        max_iter: Solver iterations, >= 10; default 2,000.
    """

    C: float = 3.0
    class_weight: str = "balanced"
    max_iter: int = 2000

    def __post_init__(self) -> None:
        if not self.C > 0:
            raise TaggingError(Errors.E005.format(name="C", value=self.C, allowed="> 0"))
        if self.class_weight not in ("balanced", "none"):
            raise TaggingError(
                Errors.E005.format(
                    name="class_weight", value=self.class_weight, allowed="'balanced' or 'none'"
                )
            )
        if self.max_iter < 10:
            raise TaggingError(Errors.E005.format(name="max_iter", value=self.max_iter, allowed=">= 10"))


class FunctionTagClassifier:
    """Predicts a probability for each of `FUNCTION_TAGS` for every sentence of a trace."""

    def __init__(self, features: FeatureConfig | None = None, config: ClassifierConfig | None = None) -> None:
        self.featurizer = SentenceFeaturizer(features)
        self.config = config or ClassifierConfig()
        self.coef: np.ndarray | None = None  # [n_tags, n_features]
        self.intercept: np.ndarray | None = None  # [n_tags]

    @property
    def fitted(self) -> bool:
        """Whether the classifier has weights."""
        return self.coef is not None

    def fit(self, traces: Sequence[Sequence[str]], labels: Sequence[Sequence[str]]) -> FunctionTagClassifier:
        """Fit on traces (lists of sentence texts) and their per-sentence tags.

        Raises:
            TaggingError: [E007] on a length mismatch, [E008] on a tag outside `FUNCTION_TAGS`
                (drop `"unknown"` sentences first), [E009] on empty data.
        """
        flat: list[str] = []
        for trace, tags in zip(traces, labels, strict=True):
            if len(trace) != len(tags):
                raise TaggingError(Errors.E007.format(n_sentences=len(trace), n_labels=len(tags)))
            flat.extend(tags)
        for tag in set(flat) - set(FUNCTION_TAGS):
            raise TaggingError(Errors.E008.format(tag=tag, tags=FUNCTION_TAGS))
        if not flat:
            raise TaggingError(Errors.E009)
        x = self.featurizer.fit(traces).transform(traces)
        y = np.array([FUNCTION_TAGS.index(tag) for tag in flat])
        model = LogisticRegression(
            C=self.config.C,
            class_weight=None if self.config.class_weight == "none" else "balanced",
            max_iter=self.config.max_iter,
        )
        model.fit(x, y)
        # expand to all tags (a tag absent from the training data gets probability ~0)
        coef = np.zeros((len(FUNCTION_TAGS), x.shape[1]), dtype=np.float32)
        intercept = np.full(len(FUNCTION_TAGS), -1e4, dtype=np.float32)
        coef[model.classes_] = model.coef_
        intercept[model.classes_] = model.intercept_
        self.coef, self.intercept = coef, intercept
        return self

    def predict_proba(self, trace: Sequence[str]) -> np.ndarray:
        """Return the `[S, len(FUNCTION_TAGS)]` tag probabilities of one trace's sentences (rows sum to 1)."""
        return self.predict_proba_many([trace])[0]

    def predict_proba_many(self, traces: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """`predict_proba` for several traces in one matrix product (faster for many short traces)."""
        if self.coef is None or self.intercept is None:
            raise TaggingError(Errors.E002)
        x = self.featurizer.transform(traces)
        logits = np.asarray(x @ self.coef.T) + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        out, start = [], 0
        for trace in traces:
            out.append(probabilities[start : start + len(trace)])
            start += len(trace)
        return out

    def to_disk(self, path: str | Path) -> None:
        """Write `classifier.json` and `weights.npz` into directory `path` (created if needed)."""
        if self.coef is None or self.intercept is None:
            raise TaggingError(Errors.E002)
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        state, arrays = self.featurizer.get_state()
        meta = {"format": _FORMAT, "tags": list(FUNCTION_TAGS), "classifier": asdict(self.config)}
        meta["featurizer"] = state
        (directory / "classifier.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        np.savez_compressed(directory / "weights.npz", coef=self.coef, intercept=self.intercept, **arrays)

    @classmethod
    def from_disk(cls, path: str | Path) -> FunctionTagClassifier:
        """Read a classifier written by `to_disk`.

        Raises:
            TaggingError: [E003] when the files are missing, [E004] when they are corrupt.
        """
        directory = Path(path)
        if not (directory / "classifier.json").is_file() or not (directory / "weights.npz").is_file():
            raise TaggingError(Errors.E003.format(path=directory))
        try:
            meta = json.loads((directory / "classifier.json").read_text(encoding="utf-8"))
            if meta.get("format") != _FORMAT or tuple(meta.get("tags", ())) != FUNCTION_TAGS:
                raise ValueError(f"expected format {_FORMAT} with tags {FUNCTION_TAGS}")
            with np.load(directory / "weights.npz") as stored:
                arrays = {name: stored[name] for name in stored.files}
            classifier = cls(config=ClassifierConfig(**meta["classifier"]))
            classifier.featurizer = SentenceFeaturizer.from_state(meta["featurizer"], arrays)
            coef, intercept = arrays["coef"], arrays["intercept"]
            if coef.shape != (len(FUNCTION_TAGS), classifier.featurizer.n_features):
                raise ValueError(f"weights of shape {coef.shape} do not match the features")
        except (ValueError, KeyError, TypeError, OSError) as error:
            raise TaggingError(Errors.E004.format(path=directory, reason=error)) from error
        classifier.coef, classifier.intercept = coef, intercept
        return classifier
