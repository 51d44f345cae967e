"""The context of a GPU forward call: a `pyadr.Conv2dContext` whose arrays live on the device.

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
"""
from __future__ import annotations

from .._context import Conv2dContext


class GpuConv2dContext(Conv2dContext):
    """Conv2dContext of pyadr.gpu calls (CuPy arrays inside)."""

    device = "gpu"

    def __init__(self, kind, geom, dtype, y_shape, has_bias, reuse):
        super().__init__(kind, geom, dtype, y_shape, has_bias, reuse)
        self._gpu = None  # reuse state: dict built by pyadr.gpu.conv (ids, groups, Wm, ...)

    @property
    def nbytes(self) -> int:
        if self._gpu is not None:
            return int(self._gpu["nbytes"])
        return int(self._x.nbytes + self._w.nbytes)

    def _need_state(self):
        if self._gpu is None:
            raise ValueError("this context comes from an exact call (reuse=None): it has no clusters")
        return self._gpu

    def _block(self, j):
        nb = self._need_state()["nblocks"]
        if isinstance(j, bool) or not hasattr(j, "__index__") or not 0 <= int(j) < nb:
            raise ValueError(f"j must be a sub-matrix index in [0, {nb}), got {j!r}")
        return int(j)

    def _group(self, j):
        st = self._need_state()
        j = self._block(j)
        for grp in st["groups"]:
            if grp["j0"] <= j < grp["j0"] + grp["nj"]:
                jb = j - grp["j0"]
                s = int(grp["boff_host"][jb])
                return grp, s, s + int(grp["nc_host"][jb]), j

    def cluster_ids(self):
        """(n_blocks, N) int32 CuPy array: the cluster of every row in every sub-matrix."""
        return self._need_state()["ids"].copy()

    def cluster_counts(self, j):
        """(clusters_j,) int32 CuPy array: members of each cluster of sub-matrix j."""
        grp, s, e, _ = self._group(j)
        return grp["counts"][s:e].copy()

    def centroids(self, j):
        """(clusters_j, L_j) CuPy array: cluster means of sub-matrix j."""
        grp, s, e, j = self._group(j)
        st = self._need_state()
        Lj = min(st["L"], st["K"] - j * st["L"])
        return grp["cent"][s:e, :Lj].copy()
