"""The context of a GPU forward call: a `pyadr.Conv2dContext` whose arrays live on the device,
and the typed reuse state it keeps for the backward (GpuForwardState, one GpuGroup per block group).

Same attributes as the CPU context; the differences, by design:
  .planes, .offsets   NumPy arrays (host), cast to the layer's dtype, exactly what the kernels used;
  .width              Python float (l2 only);
  .stats              pyadr.ReuseStats with NumPy `clusters` (fetched once per block group anyway);
  .cluster_ids()      CuPy (n_blocks, N) int32;
  .cluster_counts(j)  CuPy (clusters_j,) int32;
  .centroids(j)       CuPy (clusters_j, L_j) in the layer's dtype.
Cluster numbering: clusters of a sub-matrix are numbered in (scope group, key) order for sign
hashing and (scope group, key digest) order for l2 -- not by first occurrence as on the CPU; the
partitions are the same.

Shapes below: N rows (B*OH*OW), M output channels, K = C*kh*kw, L sub-vector length,
nb = ceil(K / L) blocks; a group holds blocks j0 .. j0+nj-1 and nct clusters over all of them.
Imports only pyadr._context (no CuPy: the arrays arrive from pyadr.gpu.conv).
"""
from __future__ import annotations

import dataclasses
from typing import List

import numpy as np

from .._context import Conv2dContext


@dataclasses.dataclass(eq=False)
class GpuGroup:
    """Clusters of one block group (blocks j0 .. j0+nj-1), as the forward built them.

    Clusters of the group are numbered block after block: block jb's are boff_host[jb] ..
    boff_host[jb] + nc_host[jb] - 1. Members are flat positions p = jb*N + n.
    """

    j0: int                 # first block of the group
    nj: int                 # blocks in the group
    perm: object            # CuPy (nj*N,) int64: positions sorted by cluster (members in row order)
    cstart: object          # CuPy (nct+1,) int64: cluster c's members are perm[cstart[c]:cstart[c+1]]
    counts: object          # CuPy (nct,) int32: members per cluster
    cent: object            # CuPy (nct, L): centroids (cluster means; zero-padded past K)
    boff: object            # CuPy (nj,) int64: first cluster of each block (device copy of boff_host)
    boff_host: np.ndarray   # (nj,) int64: first cluster of each block
    nc_host: np.ndarray     # (nj,) int64: clusters of each block

    @property
    def nclusters(self) -> int:
        """nct, the clusters of all blocks of the group."""
        return int(self.cent.shape[0])

    def cluster_range(self, jb):
        """(start, stop) of block j0+jb's clusters in the group's numbering (host ints)."""
        s = int(self.boff_host[jb])
        return s, s + int(self.nc_host[jb])

    @property
    def nbytes(self) -> int:
        """Device bytes held for the backward."""
        return int(sum(a.nbytes for a in (self.perm, self.cstart, self.counts, self.cent, self.boff)))


@dataclasses.dataclass(eq=False)
class GpuForwardState:
    """What a reuse forward on the GPU keeps for its backward."""

    ids: object                 # CuPy (nb, N) int32: cluster of every row in every block (group numbering)
    groups: List[GpuGroup]      # the block groups, in block order
    Wm: object                  # CuPy (nb*L, M): weights, rows in `order`, zero-padded past K
    colperm: object             # CuPy (K,) int64: column_permutation(C, kh, kw, order)
    nblocks: int                # nb
    L: int                      # sub-vector length
    K: int                      # C*kh*kw
    order: int                  # ORDER_CODES[cfg.order], as the kernels take it
    exact: tuple = ()           # ReuseConfig.exact: products computed exactly
    x: object = None            # CuPy copy of the input (B, C, H, W), for an exact dW only

    @property
    def nbytes(self) -> int:
        """Device bytes held for the backward (ctx.nbytes, ctx.stats.nbytes)."""
        extra = self.x.nbytes if self.x is not None else 0
        return int(self.ids.nbytes + self.Wm.nbytes + extra + sum(g.nbytes for g in self.groups))

    def locate(self, j):
        """(group, start, stop) of block j's clusters."""
        for grp in self.groups:
            if grp.j0 <= j < grp.j0 + grp.nj:
                s, e = grp.cluster_range(j - grp.j0)
                return grp, s, e
        raise AssertionError(f"block {j} is in no group of {self.nblocks} blocks")


class GpuConv2dContext(Conv2dContext):
    """Conv2dContext of pyadr.gpu calls (CuPy arrays inside)."""

    device = "gpu"

    def __init__(self, kind, geom, dtype, y_shape, has_bias, reuse):
        super().__init__(kind, geom, dtype, y_shape, has_bias, reuse)
        self._gpu = None  # GpuForwardState of a reuse call (None: exact call, _x/_w kept)

    @property
    def nbytes(self) -> int:
        if self._gpu is not None:
            return self._gpu.nbytes
        return int(self._x.nbytes + self._w.nbytes)

    def _need_state(self) -> GpuForwardState:
        if self._gpu is None:
            raise ValueError("this context comes from an exact call (reuse=None): it has no clusters")
        return self._gpu

    def _block(self, j):
        nb = self._need_state().nblocks
        if isinstance(j, bool) or not hasattr(j, "__index__") or not 0 <= int(j) < nb:
            raise ValueError(f"j must be a sub-matrix index in [0, {nb}), got {j!r}")
        return int(j)

    def cluster_ids(self):
        """(n_blocks, N) int32 CuPy array: the cluster of every row in every sub-matrix."""
        return self._need_state().ids.copy()

    def cluster_counts(self, j):
        """(clusters_j,) int32 CuPy array: members of each cluster of sub-matrix j."""
        grp, s, e = self._need_state().locate(self._block(j))
        return grp.counts[s:e].copy()

    def centroids(self, j):
        """(clusters_j, L_j) CuPy array: cluster means of sub-matrix j."""
        j = self._block(j)
        st = self._need_state()
        grp, s, e = st.locate(j)
        Lj = min(st.L, st.K - j * st.L)
        return grp.cent[s:e, :Lj].copy()
