"""What a forward call hands to its backward, and the statistics of its clustering."""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ReuseStats:
    """Clustering statistics of one reuse forward.

    rc        remaining ratio: mean over sub-matrices of clusters / rows clustered together.
    clusters  (n_blocks,) clusters per sub-matrix (summed over images for scope "input").
    rows      N, rows of the im2col matrix (B*OH*OW; B for linear layers).
    L         sub-vector length; nbytes: memory the context keeps for the backward.
    """

    rc: float
    clusters: np.ndarray
    rows: int
    L: int
    nbytes: int

    @property
    def blocks(self) -> int:
        return len(self.clusters)


class Conv2dContext:
    """Returned by conv2d_forward / linear_forward; pass it to the matching backward.

    Exact calls keep references to x and w; reuse calls keep only cluster ids, counts,
    centroids and the reordered weights (never the im2col matrix), plus a copy of x when
    ReuseConfig.exact names "dw".
    """

    device = "cpu"

    def __init__(self, kind, geom, dtype, y_shape, has_bias, reuse):
        self.kind = kind
        self.geom = geom
        self.dtype = dtype
        self.y_shape = y_shape
        self.has_bias = has_bias
        self.reuse = reuse
        self.planes = None
        self.offsets = None
        self.width = None
        self.stats = None
        self._x = None
        self._w = None
        self._state = None

    @property
    def nbytes(self) -> int:
        """Bytes held for the backward (inputs referenced by exact calls included)."""
        if self._state is not None:
            return int(self._state.nbytes)
        return int(self._x.nbytes + self._w.nbytes)

    def _need_state(self):
        if self._state is None:
            raise ValueError("this context comes from an exact call (reuse=None): it has no clusters")
        return self._state

    def cluster_ids(self) -> np.ndarray:
        """(n_blocks, N) int32: the cluster of every row in every sub-matrix."""
        st = self._need_state()
        out = np.empty((st.nblocks, st.rows), dtype=np.int32)
        st.ids_into(out)
        return out

    def cluster_counts(self, j: int) -> np.ndarray:
        """(clusters_j,) int32 members of each cluster of sub-matrix j."""
        st = self._need_state()
        j = self._block(j)
        out = np.empty(st.clusters()[j], dtype=np.int32)
        st.counts_into(j, out)
        return out

    def centroids(self, j: int) -> np.ndarray:
        """(clusters_j, L_j) cluster means of sub-matrix j."""
        st = self._need_state()
        j = self._block(j)
        out = np.empty((st.clusters()[j], st.block_len(j)), dtype=self.dtype)
        st.centroids_into(j, out)
        return out

    def _block(self, j):
        nb = self._state.nblocks
        if not isinstance(j, (int, np.integer)) or not 0 <= j < nb:
            raise ValueError(f"j must be a sub-matrix index in [0, {nb}), got {j!r}")
        return int(j)

    def __repr__(self):
        what = "exact" if self.reuse is None else f"{self.reuse!r}, rc={self.stats.rc:.4f}"
        return f"<pyadr {self.kind} context {what}>"
