"""A tracker's tracklets -> player identities across a game, no count given.

    pieces = split(rows, samples, features)            # tracklets cut where their player changes
    identity, confidence = link(pieces, features)      # pieces grouped into identities

Appearance-based tracklet association, as GTA (Sun et al., ACCV 2024 workshop) does it, with
what this project adds:

1. **A bounded sample.** Each tracklet is embedded at most `samples` times, spread evenly over
   its life, each time at its least hidden, most confident box (`sample_rows`): time and memory
   grow with the number of tracklets, not with the game's boxes.
2. **Splitting** (`split`). A tracker swaps two players' ids where they cross: the tracklet
   then holds one player, then another. The cut that best separates the sample's earlier and
   later part (largest cosine distance between their mean features, at least `min_part` samples
   a side) is kept when that distance exceeds `split_distance`; each part is split again the same
   way. A cut falls midway between the two samples on either side of it.
3. **Linking** (`link`). The embedded boxes get reid/clustering.py's sparse k-reciprocal
   Jaccard similarity (`similarity_graph`, k1 neighbours, boxes of one frame never neighbours
   of each other); pieces are merged by average linkage on it (the mean over every pair of
   their samples, as GTA's Eq. 1 averages cosine distances), the most similar admissible pair
   first, while any pair is more similar than `link_similarity` (0: while two identities share
   any neighbourhood). Two pieces, or two identities, that share a frame are never merged (a
   tracker gives a person one box a frame), which GTA's connector checks for the two tracklets
   merged but not for the identities they already belong to.

   Why Jaccard: on the bench clips' pieces (seeds 0-2, the clip model), telling two pieces of one
   player from two of different players, the mean pair cosine similarity has a ROC AUC of
   0.911, the cosine of the pieces' mean features 0.932, the mean pair Jaccard similarity
   (k1 = 40) 0.987. The defaults were chosen on seeds 3-5, not the bench's.

**Confidence** of a piece: own / (own + other), where own is its similarity to the rest of its
identity and other its highest similarity to another identity it could have joined (an identity
of one piece has own = 1), as in reid/clustering.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable

import numpy as np
import scipy.sparse as sp

from reid.clustering import similarity_graph
from reid.errors import ReidError
from reid.rules import Count, PositiveInt, Range, checked

Similarity = Annotated[float, Range(lo=-1, hi=1)]
Distance = Annotated[float, Range(lo=0, hi=2)]
MinPart = Annotated[int, Range(lo=1)]


@dataclass(frozen=True)
class Settings:
    """link_tracks.py's knobs of the method, with its defaults (README.md, stage 9)."""

    samples: PositiveInt = 64
    split_distance: Distance = 0.2
    min_part: MinPart = 6
    link_similarity: Similarity = 0.0
    k1: PositiveInt = 60  # the k-reciprocal neighbours of reid.clustering.similarity_graph
    k2: PositiveInt = 6  # its local query expansion


@dataclass(frozen=True)
class Pieces:
    """Tracklet pieces: each box's piece, and each piece's tracklet and sampled rows."""

    of_row: np.ndarray  # (n,) int64: the piece of every box
    tracklet: np.ndarray  # (P,) int64: the tracklet (index into the unique ids) each piece was cut from
    samples: list[np.ndarray]  # per piece, positions (into the sample arrays) of its embedded boxes

    def __len__(self) -> int:
        return len(self.tracklet)

    @property
    def sample_counts(self) -> np.ndarray:
        return np.array([len(s) for s in self.samples], dtype=np.int64)


def hidden_share(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(n,) the largest share of each box covered by another box of the same frame, over the
    pairs within each frame only."""
    order = np.argsort(frame, kind="stable")
    _, starts, counts = np.unique(frame[order], return_index=True, return_counts=True)
    per_row = np.repeat(counts, counts)
    first = np.repeat(starts, counts)
    a = np.repeat(np.arange(len(frame)), per_row)
    offsets = np.arange(per_row.sum()) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    b = np.repeat(first, per_row) + offsets
    a, b = order[a], order[b]
    keep = a != b
    a, b = a[keep], b[keep]
    ba, bb = box[a], box[b]
    w = np.minimum(ba[:, 0] + ba[:, 2], bb[:, 0] + bb[:, 2]) - np.maximum(ba[:, 0], bb[:, 0])
    h = np.minimum(ba[:, 1] + ba[:, 3], bb[:, 1] + bb[:, 3]) - np.maximum(ba[:, 1], bb[:, 1])
    share = np.clip(w, 0, None) * np.clip(h, 0, None) / (ba[:, 2] * ba[:, 3])
    out = np.zeros(len(frame))
    np.maximum.at(out, a, share)
    return out


@checked
def sample_rows(tracklet: np.ndarray, frame: np.ndarray, quality: np.ndarray, samples: PositiveInt) -> np.ndarray:
    """Rows to embed, sorted: each tracklet's life cut into `samples` equal runs of its boxes (all
    of them when it has fewer), and in each run the box of highest `quality`."""
    order = np.lexsort((frame, tracklet))
    t = tracklet[order]
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    lengths = np.diff(np.r_[starts, len(t)])
    rank = np.arange(len(t)) - np.repeat(starts, lengths)
    run = rank * samples // np.repeat(lengths, lengths)
    best = np.lexsort((-quality[order], run, t))
    first = np.r_[True, (t[best][1:] != t[best][:-1]) | (run[best][1:] != run[best][:-1])]
    return np.sort(order[best[first]])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@checked
def best_cut(x: np.ndarray, min_part: MinPart) -> tuple[int, float]:
    """(c, distance): the cut of the time-ordered rows `x` into x[:c] and x[c:] (each at least
    `min_part` rows) whose mean unit features are farthest apart in cosine distance; (0, 0) when
    `x` is too short to cut."""
    n = len(x)
    if n < 2 * min_part:
        return 0, 0.0
    csum = np.cumsum(x, axis=0)
    cuts = np.arange(min_part, n - min_part + 1)
    left = _unit(csum[cuts - 1])
    right = _unit(csum[-1] - csum[cuts - 1])
    distance = 1 - np.einsum("ij,ij->i", left, right)
    k = int(np.argmax(distance))
    return int(cuts[k]), float(distance[k])


def _cuts(x: np.ndarray, min_part: int, split_distance: float, depth: int) -> list[int]:
    """Sample positions where x is cut, by binary segmentation up to `depth` levels."""
    c, d = best_cut(x, min_part)
    if depth == 0 or d <= split_distance:
        return []
    return _cuts(x[:c], min_part, split_distance, depth - 1) + [c] + [c + k for k in
                                                                      _cuts(x[c:], min_part, split_distance, depth - 1)]


@checked
def split(tracklet: np.ndarray, frame: np.ndarray, sampled: np.ndarray, features: np.ndarray,
          split_distance: Distance = Settings.split_distance, min_part: MinPart = Settings.min_part,
          max_depth: PositiveInt = 3) -> Pieces:
    """Cut each tracklet where its player changes (module docstring, step 2).

    `tracklet`, `frame`: every box's tracklet index and frame; `sampled`: the rows embedded
    (sorted, as `sample_rows` gives), `features` their unit features, in that order."""
    if len(sampled) != len(features):
        raise ReidError(f"split: {len(sampled)} sampled rows but {len(features)} feature rows")
    n_tracklets = int(tracklet.max()) + 1 if len(tracklet) else 0
    of_row = np.full(len(tracklet), -1, dtype=np.int64)
    owner, parts = [], []
    s_order = np.lexsort((frame[sampled], tracklet[sampled]))
    s_t = tracklet[sampled][s_order]
    s_bounds = np.searchsorted(s_t, np.arange(n_tracklets + 1))
    r_order = np.lexsort((frame, tracklet))
    r_bounds = np.searchsorted(tracklet[r_order], np.arange(n_tracklets + 1))
    for t in range(n_tracklets):
        mine = s_order[s_bounds[t]:s_bounds[t + 1]]  # positions into sampled/features, in time order
        rows = r_order[r_bounds[t]:r_bounds[t + 1]]
        cuts = _cuts(features[mine], min_part, split_distance, max_depth) if len(mine) else []
        # a cut between samples k-1 and k falls midway between their frames
        edges = [(frame[sampled[mine[k - 1]]] + frame[sampled[mine[k]]]) / 2 for k in cuts]
        segment = np.searchsorted(np.asarray(edges, dtype=np.float64), frame[rows], side="right")
        bounds = [0, *cuts, len(mine)]
        for s in range(len(bounds) - 1):
            of_row[rows[segment == s]] = len(owner)
            owner.append(t)
            parts.append(mine[bounds[s]:bounds[s + 1]])
    return Pieces(of_row, np.asarray(owner, dtype=np.int64), parts)


@checked
def co_occurring(of_row: np.ndarray, frame: np.ndarray, n_pieces: Count) -> sp.csr_matrix:
    """(P, P) sparse bool: which pieces have a box in a common frame (by piece x frame incidence)."""
    frames, column = np.unique(frame, return_inverse=True)
    incidence = sp.csr_matrix((np.ones(len(frame), dtype=np.float32), (of_row, column)),
                              shape=(n_pieces, len(frames)))
    both = (incidence @ incidence.T).tocsr()
    both.setdiag(0)
    both.eliminate_zeros()
    return both.astype(bool)


def piece_sums(pieces: Pieces, graph: sp.csr_matrix) -> np.ndarray:
    """(P, P): the summed similarity (of `graph`, between embedded boxes) of every two pieces' samples."""
    rows = np.concatenate(pieces.samples) if len(pieces) else np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(len(pieces)), pieces.sample_counts)
    incidence = sp.csr_matrix((np.ones(len(rows)), (owner, rows)), shape=(len(pieces), graph.shape[0]))
    return (incidence @ graph @ incidence.T).toarray()


@checked
def link(pieces: Pieces, graph: sp.csr_matrix, frame: np.ndarray,
         link_similarity: Similarity = Settings.link_similarity) -> tuple[np.ndarray, np.ndarray]:
    """(identity (P,) int64 numbered largest first, confidence (P,) float32) of each piece
    (module docstring, step 3), `graph` the (n, n) similarity of the embedded boxes. A piece
    with no embedded box stays an identity of its own."""
    n = len(pieces)
    pair = piece_sums(pieces, graph)
    counts = pieces.sample_counts.astype(np.float64)
    together = co_occurring(pieces.of_row, frame, n).toarray()
    apart = together | (counts[:, None] == 0) | (counts[None, :] == 0)
    np.fill_diagonal(apart, True)
    total = pair.copy()
    sim = np.where(apart, -np.inf, total / np.maximum(np.outer(counts, counts), 1))
    members = np.arange(n)
    size = counts.copy()
    while n:
        a, b = divmod(int(np.argmax(sim)), n)
        if not sim[a, b] > link_similarity:
            break
        total[a] += total[b]
        total[:, a] = total[a]
        size[a] += size[b]
        members[members == b] = a
        apart[a] |= apart[b]
        apart[:, a] = apart[a]
        apart[b], apart[:, b] = True, True
        row = np.where(apart[a], -np.inf, total[a] / np.maximum(size * size[a], 1))
        sim[a], sim[:, a] = row, row
        sim[b], sim[:, b] = -np.inf, -np.inf
    identity = _by_size(members, counts)
    return identity, piece_confidence(pair, counts, identity, together)


def _by_size(members: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Cluster roots renumbered 0..K-1, the identity with most embedded boxes first."""
    roots, inverse = np.unique(members, return_inverse=True)
    size = np.bincount(inverse, weights=weights + 1e-6, minlength=len(roots))
    rank = np.empty(len(roots), dtype=np.int64)
    rank[np.lexsort((roots, -size))] = np.arange(len(roots))
    return rank[inverse]


def piece_confidence(pair: np.ndarray, counts: np.ndarray, identity: np.ndarray, together: np.ndarray) -> np.ndarray:
    """own / (own + other) per piece (module docstring), from the pieces' summed pair
    similarities `pair`, float32 in [0, 1]; 0.5 where a piece was not embedded."""
    k = int(identity.max()) + 1
    onehot = np.zeros((len(identity), k))
    onehot[np.arange(len(identity)), identity] = 1
    to_identity, id_counts = pair @ onehot, onehot.T @ counts
    rest = id_counts[identity] - counts
    mine = np.arange(len(identity))
    own = np.where(rest > 0, (to_identity[mine, identity] - pair[mine, mine]) / np.maximum(counts * rest, 1), 1.0)
    cross = to_identity / np.maximum(np.outer(counts, id_counts), 1)
    cross[((together.astype(np.float64) @ onehot) > 0) | (onehot > 0)] = -np.inf
    other = cross.max(axis=1) if k > 1 else np.full(len(identity), -np.inf)
    own, other = np.clip(own, 0, 1), np.clip(np.where(np.isfinite(other), other, 0), 0, 1)
    conf = np.where(own + other > 0, own / np.maximum(own + other, 1e-12), 0.5)
    return np.where(counts > 0, conf, 0.5).astype(np.float32)


@dataclass(frozen=True)
class Linked:
    """What `link_tracklets` found: the boxes embedded, the pieces and their identities."""

    sampled: np.ndarray  # rows embedded, sorted
    pieces: Pieces
    identity: np.ndarray  # (P,) per piece, from 0, largest first
    confidence: np.ndarray  # (P,) float32

    @property
    def new_id(self) -> np.ndarray:
        """Each box's identity from 1, the id of the linked tracks file."""
        return self.identity[self.pieces.of_row] + 1


def link_tracklets(frame: np.ndarray, track_id: np.ndarray, box: np.ndarray, conf: np.ndarray, usable: np.ndarray,
                   embed: Callable[[np.ndarray], np.ndarray], settings: Settings = Settings()) -> Linked:
    """The whole method on one tracks file: sample each tracklet's boxes among the `usable` ones
    (least hidden and most confident first), embed them (`embed(rows)` -> unit features), split
    and link. What link_tracks.py and bench/link_tracks.py both run."""
    _, tracklet = np.unique(track_id, return_inverse=True)
    quality = np.where(usable, conf * (1 - hidden_share(frame, box)), -np.inf)
    sampled = sample_rows(tracklet, frame, quality, settings.samples)
    sampled = sampled[usable[sampled]]
    features = embed(sampled)
    pieces = split(tracklet, frame, sampled, features, settings.split_distance, settings.min_part)
    groups = np.unique(frame[sampled], return_inverse=True)[1]  # boxes of one frame: other people
    graph = similarity_graph(features, groups, settings.k1, settings.k2) if len(sampled) > 1 else \
        sp.csr_matrix((len(sampled), len(sampled)))
    identity, confidence = link(pieces, graph, frame, settings.link_similarity)
    return Linked(sampled, pieces, identity, confidence)
