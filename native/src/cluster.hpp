// Key -> cluster id tables. Ids are numbered by first occurrence, so a partition is a pure
// function of the row order (deterministic for any thread count).
//   dense: a 2^H table of ids (sign hashing with small H), cleared through its touched list;
//   hashed: open addressing on 64-bit keys, grown (doubling, load <= 1/2) with the number of
//   clusters, so it stays cache-sized when the clusters are few; never 2^H-sized;
//   tuples (l2): hashed on a 64-bit digest of the H integers, compared in full on a match.
#pragma once

#include <vector>

#include "common.hpp"

namespace pyadr {
namespace detail {

inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

inline uint64_t tuple_digest(const int64_t* q, int H) {
  uint64_t h = 0x9e3779b97f4a7c15ULL;
  for (int i = 0; i < H; ++i) h = mix64(h ^ static_cast<uint64_t>(q[i]));
  return h;
}

class ClusterTable {
 public:
  // rows: most keys inserted between two clear() calls; key_bits: keys are < 2^key_bits;
  // tuple_len: 0 for plain keys, H for l2 tuples (keys are then digests).
  void reset(int64_t rows, int key_bits, int tuple_len) {
    tuple_len_ = tuple_len;
    tuples_.clear();
    const int H = key_bits;
    dense_ = tuple_len == 0 && H <= 16 && (int64_t(1) << H) <= 8 * rows + 1024;
    if (dense_) {
      if (dense_ids_.size() != (size_t(1) << H)) dense_ids_.assign(size_t(1) << H, -1);
    } else {
      size_t cap = 16;
      while (cap < size_t(2 * rows) && cap < kInitialSlots) cap <<= 1;
      touched_.clear();
      slots_.assign(cap, Slot{0, -1});
      mask_ = cap - 1;
      if (tuple_len) slot_tuple_.assign(cap, 0);
    }
    clear();
  }

  // Forget every key (next ids are numbered from the caller's counter).
  void clear() {
    if (dense_) {
      for (uint64_t k : touched_) dense_ids_[k] = -1;
    } else {
      for (uint64_t s : touched_) slots_[s].id = -1;
    }
    touched_.clear();
    tuples_.clear();
  }

  // Id of `key`, or -1 when absent (plain keys only).
  int32_t find(uint64_t key) const {
    if (dense_) return dense_ids_[key];
    size_t s = mix64(key) & mask_;
    while (true) {
      const Slot& slot = slots_[s];
      if (slot.id < 0) return -1;
      if (slot.key == key) return slot.id;
      s = (s + 1) & mask_;
    }
  }

  // Keys stored since the last clear().
  size_t size() const { return touched_.size(); }

  // Id of `key`, inserting it as `next` when new. For tuples, key is the digest of q.
  PYADR_INLINE int32_t find_or_insert(uint64_t key, const int64_t* q, int32_t next) {
    if (dense_) {
      int32_t& id = dense_ids_[key];
      if (id < 0) {
        id = next;
        touched_.push_back(key);
      }
      return id;
    }
    size_t s = mix64(key) & mask_;
    while (true) {
      Slot& slot = slots_[s];
      if (slot.id < 0) {
        if (2 * (touched_.size() + 1) > slots_.size()) {  // key is new: make room, find its slot again
          grow();
          s = mix64(key) & mask_;
          while (slots_[s].id >= 0) s = (s + 1) & mask_;
        }
        slots_[s].key = key;
        slots_[s].id = next;
        touched_.push_back(s);
        if (tuple_len_ && q) {
          slot_tuple_[s] = tuples_.size() / tuple_len_;
          tuples_.insert(tuples_.end(), q, q + tuple_len_);
        }
        return next;
      }
      if (slot.key == key && (!tuple_len_ || same_tuple(slot_tuple_[s], q))) return slot.id;
      s = (s + 1) & mask_;
    }
  }

 private:
  struct Slot {
    uint64_t key;
    int32_t id;
  };
  static constexpr size_t kInitialSlots = 1024;

  // Doubles the capacity, re-placing every stored key (ids and tuples are kept).
  void grow() {
    std::vector<Slot> old(slots_.size() * 2, Slot{0, -1});
    old.swap(slots_);
    std::vector<size_t> old_tuple;
    if (tuple_len_) {
      old_tuple.assign(slots_.size(), 0);
      old_tuple.swap(slot_tuple_);
    }
    mask_ = slots_.size() - 1;
    std::vector<uint64_t> placed;
    placed.reserve(touched_.size());
    for (uint64_t t : touched_) {
      size_t s = mix64(old[t].key) & mask_;
      while (slots_[s].id >= 0) s = (s + 1) & mask_;
      slots_[s] = old[t];
      if (tuple_len_) slot_tuple_[s] = old_tuple[t];
      placed.push_back(s);
    }
    touched_.swap(placed);
  }
  bool same_tuple(size_t t, const int64_t* q) const {
    const int64_t* stored = tuples_.data() + t * tuple_len_;
    for (int i = 0; i < tuple_len_; ++i)
      if (stored[i] != q[i]) return false;
    return true;
  }
  bool dense_ = true;
  int tuple_len_ = 0;
  size_t mask_ = 0;
  std::vector<int32_t> dense_ids_;
  std::vector<Slot> slots_;
  std::vector<size_t> slot_tuple_;
  std::vector<uint64_t> touched_;
  std::vector<int64_t> tuples_;
};

}  // namespace detail
}  // namespace pyadr
