"""k-means clusters of the embeddings, and a summary of each cluster that a person can judge in seconds.

*Diversify and Conquer: Diversity-Centric Data Selection with Iterative Refinement* (arXiv 2409.11378) clusters the
embeddings with k-means, k chosen by the best silhouette score. Winnow clusters the L2-normalised embeddings (so
Euclidean k-means ranks like cosine), searches k over a grid on a seeded sample of at most 5,000 rows (one k-means
fit per k, cosine silhouette on that sample), keeps k well below the selection budget, restarts the chosen k on the
sample (several restarts, lowest inertia kept), then fits it on every row from the sample's centroids: `KMeans`
below 20,000 rows, `MiniBatchKMeans` above. Restarts on all rows are slow at a large k; started from the sample's
centroids the fit converges in a few iterations. Every fit seeds with plain k-means++ (one trial per centre), much
cheaper than the greedy default (figures: benchmarks/RESULTS.md, "Measurements behind defaults"). Cluster ids are renumbered by size, largest
first. Summaries use class-based TF-IDF (BERTopic's c-TF-IDF: term frequency inside the cluster times log(1 + mean
words per cluster / term frequency overall)) on scikit-learn's `CountVectorizer` with English stop words.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from core import chunked
from core.errors import DataError, WinnowWarning
from core.valuation.base import Values

K_GRID: tuple[int, ...] = (4, 8, 16, 32, 64, 128, 256)
SAMPLE_SIZE = 5_000  # rows for the k search and the silhouette
MINIBATCH_ABOVE = 20_000  # rows; MiniBatchKMeans past this
# rows; past this the final MiniBatchKMeans is fitted on a seeded sample of this many rows and every row is then
# labelled with its nearest centroid chunk by chunk (here, in joblib processes or on Dask workers): the normalised
# (n, d) matrix is never built whole. At or below it nothing changes.
FIT_MAX = 200_000
PREDICT_CHUNK = 50_000  # rows per labelling call on the sampled path
ROWS_PER_CLUSTER = 10  # k is kept at most budget / 10 (and sample / 10) so every cluster can get a few rows
# Tokens that fill tweets and web text without saying what a cluster is about.
WEB_STOP_WORDS = ("http", "https", "www", "com", "rt", "amp", "co", "via", "html", "lrb", "rrb", "ve", "ll", "don",
                  "didn", "doesn", "isn", "wasn", "aren", "won", "wouldn", "couldn", "shouldn", "just", "im")


@dataclass(frozen=True)
class Clusters:
    """k-means clusters of one embedding, aligned with `uids`."""

    uids: NDArray[np.str_]  # (n,)
    labels: NDArray[np.int64]  # (n,) cluster id per row, 0 = largest cluster
    centroids: NDArray[np.float32]  # (k, d) in the L2-normalised embedding space
    k: int
    silhouette: dict[int, float] = field(default_factory=dict)  # k tried -> cosine silhouette on the sample
    seed: int | None = 0
    seconds: float = 0.0
    method: str = "kmeans"  # "kmeans" or "minibatch"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.labels.shape != (len(self.uids),) or self.centroids.shape[0] != self.k:
            raise TypeError(f"Clusters shapes disagree: uids {len(self.uids)}, labels {self.labels.shape}, "
                            f"centroids {self.centroids.shape}, k {self.k}")

    def __len__(self) -> int:
        return len(self.uids)

    @property
    def sizes(self) -> NDArray[np.int64]:
        """(k,) rows per cluster."""
        return np.bincount(self.labels, minlength=self.k).astype(np.int64)


def _normalise(X: NDArray[np.floating]) -> NDArray[np.float32]:
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def _cosine_distances(S: NDArray[np.float32]) -> NDArray[np.float32]:
    D = 1.0 - S @ S.T
    np.clip(D, 0.0, 2.0, out=D)
    np.fill_diagonal(D, 0.0)
    return D


def _silhouette(D: NDArray[np.float32], labels: NDArray[np.int64]) -> float:
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(silhouette_score(D, labels, metric="precomputed"))


def _kmeans(X: NDArray[np.float32], k: int, *, seed: int | None, n_init: int,
            init: NDArray[np.float32] | None = None, minibatch: bool = False) -> tuple[Any, NDArray[np.int64]]:
    """k-means, best of `n_init` restarts. Without `init` each restart starts from plain k-means++ (one trial per
    centre): scikit-learn's greedy k-means++ spent 7 of 8 CPU seconds seeding k = 256 on 5,000 x 384 rows."""
    from sklearn.cluster import KMeans, MiniBatchKMeans, kmeans_plusplus

    if minibatch:
        assert init is not None
        model = MiniBatchKMeans(n_clusters=k, init=init, n_init=1, batch_size=4096, max_iter=50,
                                max_no_improvement=5, random_state=seed, compute_labels=False)
        model.fit(X)
        return model, model.predict(X).astype(np.int64)
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(1 if init is not None else max(1, n_init)):
        rs = int(rng.integers(2**31 - 1))
        start = init if init is not None else kmeans_plusplus(X, k, random_state=rs, n_local_trials=1)[0]
        model = KMeans(n_clusters=k, init=start, n_init=1, max_iter=100, tol=1e-4, random_state=rs).fit(X)
        if best is None or model.inertia_ < best.inertia_:
            best = model
    assert best is not None
    return best, best.labels_.astype(np.int64)


def _predict_chunk(model: Any, X: NDArray[np.floating]) -> NDArray[np.int32]:
    """Nearest centroid of each (normalised) row of one chunk: runs here, in a joblib worker or on a Dask worker."""
    return model.predict(_normalise(X)).astype(np.int32)


def auto_k_grid(n_rows: int) -> tuple[int, ...]:
    """The k searched for `n_rows` rows: three powers of two from about sqrt(n) / 4 upward (at least 4).

    The silhouette on a sample keeps preferring a handful of clusters (k = 4 for the 38,158 demo tweets), too coarse
    for per-cluster weights; Diversify and Conquer's best k grew with the data (64 on Alpaca's 52k, 2,048 on
    WizardLM's 196k). So the search range grows with the rows: 38,158 rows search 32, 64, 128; 2,000 rows 8, 16, 32;
    the silhouette picks among them.
    """
    lo = max(4, int(np.sqrt(max(n_rows, 1)) / 4))
    lo = 1 << (lo.bit_length() - 1)  # a power of two, rounded down
    return (lo, 2 * lo, 4 * lo)


def k_reason(clusters: "Clusters", *, n_rows: int | None = None) -> str:
    """Why this k: set by the user, or the best silhouette among the grid searched (and why that grid)."""
    p = clusters.params
    if p.get("k_requested") is not None:
        return f"k = {clusters.k}: set by the user"
    sil = ", ".join(f"{k}: {v:.3f}" for k, v in sorted(clusters.silhouette.items()))
    why = p.get("grid_reason") or "the grid given"
    return (f"k = {clusters.k}: the best cosine silhouette on a sample of {p.get('sample_size', 0):,} rows among "
            f"k = {', '.join(map(str, sorted(clusters.silhouette)))} ({why}); silhouette by k: {sil}")


def fit_clusters(X: NDArray[np.floating], *, k: int | None = None, k_grid: Sequence[int] | None = None,
                 seed: int | None = 0, budget: int | None = None, uids: Sequence[str] | None = None,
                 sample_size: int = SAMPLE_SIZE, n_init: int = 4, minibatch_above: int = MINIBATCH_ABOVE,
                 on_progress: Callable[..., None] | None = None, fit_max: int = FIT_MAX, n_jobs: int = -1,
                 scheduler: str | None = None) -> Clusters:
    """Cluster the embeddings with k-means, choosing k by the best cosine silhouette unless `k` is given.

    Args:
        X: (n, d) embeddings; normalised here, so any scale works.
        k: Number of clusters; None searches `k_grid`.
        k_grid: Candidate k; values above `budget / 10` or `sample / 10` are skipped (k stays well below the budget).
            None: `auto_k_grid(n)`, a range that grows with the rows.
        seed: Seeds the sample and every k-means fit.
        budget: Rows the selection will keep, if known; caps k.
        uids: Row ids aligned with X (default "0", "1", ...).
        sample_size: Rows of the seeded sample on which the grid is fitted and the silhouette computed.
        n_init: k-means restarts for the chosen k (on the sample; the grid fits once per k unless the sample is
            every row).
        minibatch_above: Row count past which the final fit uses MiniBatchKMeans.
        on_progress: Called as on_progress(fraction, message, None).
        fit_max: Rows past which the final fit uses a seeded sample of this many rows and every row gets its nearest
            centroid in chunks (`core.chunked`); at or below it the fit sees every row, as before.
        n_jobs: joblib processes for that labelling (-1, the default: one per core; 1: in this process).
        scheduler: Dask scheduler address for that labelling (default $WINNOW_DASK_SCHEDULER; the same labels).

    Returns:
        The clusters, with the silhouette of every k tried.

    Raises:
        DataError: If there are fewer than 4 rows, or `k` is not between 2 and the number of rows.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    n = int(np.shape(X)[0])
    sampled = n > fit_max  # the large-data path: no whole normalised copy of X
    Xn = None if sampled else _normalise(X)
    uid_arr = np.asarray([str(i) for i in range(n)] if uids is None else [str(u) for u in uids])
    if len(uid_arr) != n:
        raise TypeError(f"uids ({len(uid_arr)}) and X ({n}) disagree")
    if n < 4:
        raise DataError(f"clustering needs at least 4 rows; got {n}")
    report = on_progress or (lambda *a: None)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, sample_size), replace=False))
    S = _normalise(X[sample]) if Xn is None else Xn[sample]
    rs = int(rng.integers(2**31 - 1)) if seed is not None else None

    if k is not None:
        if not 2 <= int(k) <= n:
            raise DataError(f"--k {k} is not between 2 and the {n} rows; pick a smaller k")
        grid = [int(k)]
    else:
        grid_reason = "the grid given"
        if k_grid is None:
            k_grid = auto_k_grid(n)
            grid_reason = f"a range growing with the rows: from about sqrt({n:,}) / 4"
        cap = max(2, len(sample) // ROWS_PER_CLUSTER)
        if budget is not None:
            cap = max(2, min(cap, int(budget) // ROWS_PER_CLUSTER))
        grid = sorted({int(g) for g in k_grid if 2 <= int(g) <= cap}) or [min(cap, max(2, min(k_grid)))]
        if len(grid) < len(k_grid):
            grid_reason += f", at most {cap:,} (" + ("budget" if budget is not None and cap == max(
                2, int(budget) // ROWS_PER_CLUSTER) else "sample") + f" / {ROWS_PER_CLUSTER})"

    silhouette: dict[int, float] = {}
    best: tuple[float, int, Any] | None = None
    D = _cosine_distances(S)
    for i, g in enumerate(grid):
        report(0.8 * i / (len(grid) + 1), f"k={g} on {len(sample)} rows", None)
        g_eff = min(g, len(sample))
        model, lab = _kmeans(S, g_eff, seed=rs, n_init=n_init if len(sample) == n else 1)
        score = _silhouette(D, lab)
        silhouette[g] = round(score, 6)
        key = -np.inf if np.isnan(score) else score
        if best is None or key > best[0]:
            best = (key, g, model)
    assert best is not None
    _, k_best, sample_model = best

    method = "kmeans"
    if len(sample) == n:
        labels = sample_model.labels_.astype(np.int64)
        centroids = sample_model.cluster_centers_.astype(np.float32)
    else:
        if n_init > 1:  # restarts for the chosen k, on the sample; keep the lowest inertia
            report(0.7, f"k={k_best}: {n_init - 1} more restarts", None)
            again, _ = _kmeans(S, min(k_best, len(sample)), seed=None if rs is None else rs + 1,
                               n_init=n_init - 1)
            if again.inertia_ < sample_model.inertia_:
                sample_model = again
        report(0.8, f"k={k_best} on all {n} rows", None)
        init = sample_model.cluster_centers_.astype(np.float32)
        if sampled:
            method = "minibatch-sampled"
            fit_rows = np.sort(np.random.default_rng(None if seed is None else [int(seed), 1]).choice(
                n, size=int(fit_max), replace=False))
            report(0.8, f"k={k_best} on a sample of {len(fit_rows):,} of {n:,} rows", None)
            model, _ = _kmeans(_normalise(X[fit_rows]), k_best, seed=rs, n_init=1, minibatch=True, init=init)
            report(0.9, f"labelling {n:,} rows", None)
            parts = chunked.map_chunks(_predict_chunk, model, X, chunked.row_chunks(n, PREDICT_CHUNK),
                                       n_jobs=n_jobs, scheduler=scheduler,
                                       on_chunk=lambda d, t: report(0.9 + 0.1 * d / t, f"labelled {d}/{t} chunks",
                                                                    None))
            labels = np.concatenate(parts).astype(np.int64)
        elif n > minibatch_above:
            method = "minibatch"
            assert Xn is not None
            model, labels = _kmeans(Xn, k_best, seed=rs, n_init=1, minibatch=True, init=init)
        else:
            assert Xn is not None
            model, labels = _kmeans(Xn, k_best, seed=rs, n_init=1, init=init)
        centroids = model.cluster_centers_.astype(np.float32)

    # renumber by size (largest first), dropping empty clusters
    sizes = np.bincount(labels, minlength=len(centroids))
    order = np.lexsort((np.arange(len(sizes)), -sizes))
    order = order[sizes[order] > 0]
    if len(order) < k_best:
        warnings.warn(f"k-means found {len(order)} non-empty clusters of the {k_best} asked", WinnowWarning,
                      stacklevel=2)
    remap = np.full(len(sizes), -1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    labels = remap[labels]
    centroids = centroids[order]
    report(1.0, f"{len(order)} clusters", None)
    params = {"k": int(len(order)), "k_requested": None if k is None else int(k), "k_grid": list(grid),
              "seed": seed, "sample_size": int(len(sample)), "n_init": n_init, "budget": budget,
              "grid_reason": None if k is not None else grid_reason,
              "cpu_seconds": round(time.process_time() - c0, 3)}
    return Clusters(uids=uid_arr, labels=labels, centroids=centroids, k=int(len(order)), silhouette=silhouette,
                    seed=seed, seconds=time.perf_counter() - t0, method=method, params=params)


def _align(values: Values | NDArray[np.floating] | None, uids: NDArray[np.str_]) -> NDArray[np.float64] | None:
    """Values aligned with `uids` (nan where a row has none), or None."""
    if values is None:
        return None
    if isinstance(values, Values):
        pos = {u: i for i, u in enumerate(values.uids)}
        out = np.full(len(uids), np.nan)
        for j, u in enumerate(uids):
            i = pos.get(u)
            if i is not None:
                out[j] = values.values[i]
        return out
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (len(uids),):
        raise TypeError(f"values have shape {arr.shape}; expected ({len(uids)},)")
    return arr


def _ctfidf(texts: Sequence[str], labels: NDArray[np.int64], k: int, n_words: int) -> list[list[str]]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    stop = sorted(set(ENGLISH_STOP_WORDS) | set(WEB_STOP_WORDS))
    vec = CountVectorizer(stop_words=stop, token_pattern=r"(?u)\b[^\W\d_][^\W\d_]+\b", min_df=2 if len(texts) > 50
                          else 1, max_features=50_000, dtype=np.float64)
    try:
        C = vec.fit_transform(list(texts))
    except ValueError:  # empty vocabulary
        return [[] for _ in range(k)]
    import scipy.sparse as sp

    member = sp.csr_matrix((np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, len(labels)))
    M = np.asarray((member @ C).todense())  # (k, V) word counts per cluster
    words_per_cluster = M.sum(axis=1, keepdims=True)
    tf = M / np.maximum(words_per_cluster, 1.0)
    avg_words = M.sum() / max(k, 1)
    idf = np.log1p(avg_words / np.maximum(M.sum(axis=0), 1.0))
    score = tf * idf
    vocab = np.asarray(vec.get_feature_names_out())
    out = []
    for c in range(k):
        top = np.argsort(-score[c], kind="stable")[:n_words]
        out.append([str(vocab[j]) for j in top if M[c, j] > 0])
    return out


def summarize_clusters(clusters: Clusters, texts: Sequence[str], labels: Sequence[Any], X: NDArray[np.floating],
                       values: Values | NDArray[np.floating] | None = None, *, classes: Sequence[str] | None = None,
                       n_words: int = 8, n_examples: int = 5) -> list[dict[str, Any]]:
    """Describe each cluster: size, label mix, values, top words, the texts nearest its centroid and a short name.

    Args:
        clusters: From `fit_clusters`, aligned with `texts`, `labels` and `X`.
        texts: (n,) row texts.
        labels: (n,) class names, or integer codes into `classes`.
        X: (n, d) the embeddings the clusters were fitted on.
        values: A valuation run (aligned by uid) or an (n,) array; None leaves the value fields empty.
        classes: Class names for integer `labels`.
        n_words: Top words per cluster (class-based TF-IDF).
        n_examples: Texts nearest the centroid per cluster.

    Returns:
        One JSON-safe dict per cluster, ordered by cluster id: cluster, name, size, share, label_counts, majority,
        majority_share, value_mean, value_std, share_negative (None without values), top_words, examples
        (list of {uid, text, label, similarity}).
    """
    n = len(clusters)
    if len(texts) != n or len(labels) != n or np.shape(X)[0] != n:
        raise TypeError(f"clusters ({n}), texts ({len(texts)}), labels ({len(labels)}) and X "
                        f"({np.shape(X)[0]}) must be aligned")
    lab = np.asarray(labels)
    if classes is not None and np.issubdtype(lab.dtype, np.integer):
        names = np.asarray(list(classes), dtype=object)[lab]
    else:
        names = lab.astype(str).astype(object)
    class_list = list(classes) if classes is not None else sorted(set(names.tolist()))
    vals = _align(values, clusters.uids)
    cent = _normalise(clusters.centroids)
    sim = np.empty(n, dtype=np.float32)
    for s0 in range(0, n, PREDICT_CHUNK):  # chunk by chunk: no whole normalised copy of X
        s1 = min(n, s0 + PREDICT_CHUNK)
        sim[s0:s1] = np.einsum("ij,ij->i", _normalise(X[s0:s1]), cent[clusters.labels[s0:s1]])
    top_words = _ctfidf(texts, clusters.labels, clusters.k, n_words)
    order = np.lexsort((-sim, clusters.labels))  # grouped by cluster, nearest first
    starts = np.concatenate([[0], np.cumsum(clusters.sizes)])
    out: list[dict[str, Any]] = []
    for c in range(clusters.k):
        rows = order[starts[c]:starts[c + 1]]
        size = len(rows)
        counts = {cl: int(np.sum(names[rows] == cl)) for cl in class_list}
        majority = max(counts, key=lambda cl: counts[cl]) if size else None
        v = vals[rows] if vals is not None else None
        v = v[~np.isnan(v)] if v is not None else None
        words = top_words[c]
        out.append({
            "cluster": c,
            "name": " / ".join(words[:3]) if words else f"cluster {c}",
            "size": size,
            "share": round(size / n, 6),
            "label_counts": counts,
            "majority": majority,
            "majority_share": round(counts[majority] / size, 6) if size and majority is not None else None,
            "value_mean": float(np.mean(v)) if v is not None and len(v) else None,
            "value_std": float(np.std(v)) if v is not None and len(v) else None,
            "share_negative": float(np.mean(v < 0)) if v is not None and len(v) else None,
            "top_words": words,
            "examples": [{"uid": str(clusters.uids[i]), "text": str(texts[i]), "label": str(names[i]),
                          "similarity": round(float(sim[i]), 4)} for i in rows[:n_examples]],
        })
    return out


def summaries_table(summaries: Sequence[dict[str, Any]], *, n_words: int = 5) -> list[dict[str, Any]]:
    """Flat rows for printing: cluster, name, size, label mix, mean value, share negative, top words."""
    rows = []
    for s in summaries:
        size = max(s["size"], 1)
        mix = ", ".join(f"{cl} {100 * c / size:.0f}%" for cl, c in
                        sorted(s["label_counts"].items(), key=lambda kv: -kv[1]) if c)
        rows.append({"cluster": s["cluster"], "name": s["name"], "size": s["size"], "label mix": mix,
                     "mean value": s["value_mean"], "negative": s["share_negative"],
                     "top words": " ".join(s["top_words"][:n_words])})
    return rows
