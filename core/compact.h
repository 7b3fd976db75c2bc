// Compact storage for per-member records. A job of 100,000 members keeps 100,000 records for
// its whole life, and they are allocated during a join storm, interleaved with gRPC's ~16 KiB of
// short-lived call state per member. Every small long-lived heap block left between freed call
// state keeps its whole 4 KiB page resident after the storm (malloc_trim can only hand back
// pages that are entirely free), so the daemon retained ~4.8 KiB per member for ~0.8 KiB of
// live records. The types here keep a member's record in as few, as densely packed blocks as
// possible:
//   * NodePool / PoolAllocator: a job's member records are carved from chunks of many records;
//   * StringInterner: job-wide strings shared by many members (host address, host name) are
//     stored once per job, members point at them;
//   * InlineString: a short string (the member credential, 32 hex characters; a node id of up
//     to 40, e.g. a UUID) lives inside the record, or the timer, instead of in a heap block of
//     its own.
#ifndef MS_RENDEZVOUS_CORE_COMPACT_H_
#define MS_RENDEZVOUS_CORE_COMPACT_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/container/node_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"

namespace ms_rendezvous::core {

// Fixed-size blocks carved from chunks that grow geometrically (a small job costs one small
// chunk, a large one a few hundred chunks of up to kMaxChunkNodes records). Freed blocks are
// reused; chunks are only returned when the pool is destroyed (with its job), so the pool holds
// at most the job's peak number of records. Not thread-safe: the owner's lock guards it.
class NodePool {
 public:
  static constexpr size_t kFirstChunkNodes = 8;
  static constexpr size_t kMaxChunkNodes = 256;

  NodePool(size_t node_size, size_t node_align)
      : align_(std::max(node_align, alignof(FreeNode))),
        node_size_(RoundUp(std::max(node_size, sizeof(FreeNode)), align_)) {}
  NodePool(const NodePool&) = delete;
  NodePool& operator=(const NodePool&) = delete;
  ~NodePool() {
    for (void* chunk : chunks_) ::operator delete(chunk, std::align_val_t(align_));
  }

  size_t node_size() const { return node_size_; }

  void* Allocate() {
    if (free_ != nullptr) {
      FreeNode* n = free_;
      free_ = n->next;
      ++live_;
      return n;
    }
    if (bump_left_ == 0) Grow();
    void* p = bump_;
    bump_ += node_size_;
    --bump_left_;
    ++live_;
    return p;
  }

  void Deallocate(void* p) {
    FreeNode* n = new (p) FreeNode;
    n->next = free_;
    free_ = n;
    --live_;
  }

  size_t live() const { return live_; }
  size_t chunks() const { return chunks_.size(); }
  size_t capacity() const { return capacity_; }  // blocks in all chunks

 private:
  struct FreeNode {
    FreeNode* next;
  };
  static size_t RoundUp(size_t n, size_t a) { return (n + a - 1) / a * a; }

  void Grow() {
    const size_t nodes = next_chunk_nodes_;
    next_chunk_nodes_ = std::min(next_chunk_nodes_ * 2, kMaxChunkNodes);
    void* chunk = ::operator new(nodes * node_size_, std::align_val_t(align_));
    chunks_.push_back(chunk);
    bump_ = static_cast<char*>(chunk);
    bump_left_ = nodes;
    capacity_ += nodes;
  }

  const size_t align_;
  const size_t node_size_;
  std::vector<void*> chunks_;
  FreeNode* free_ = nullptr;
  char* bump_ = nullptr;
  size_t bump_left_ = 0;
  size_t next_chunk_nodes_ = kFirstChunkNodes;
  size_t live_ = 0;
  size_t capacity_ = 0;
};

// Allocator for node-based containers (absl::node_hash_map): single objects of type `Pooled`
// (the map's node) come from a NodePool; everything else (the map's slot array, which grows by
// doubling and so is one large block anyway) from the global heap.
template <typename T, typename Pooled>
class PoolAllocator {
 public:
  using value_type = T;
  template <typename U>
  struct rebind {
    using other = PoolAllocator<U, Pooled>;
  };

  explicit PoolAllocator(NodePool* pool) : pool_(pool) {}
  template <typename U>
  PoolAllocator(const PoolAllocator<U, Pooled>& other) : pool_(other.pool()) {}  // NOLINT

  T* allocate(size_t n) {
    if (std::is_same_v<T, Pooled> && n == 1) return static_cast<T*>(pool_->Allocate());
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, size_t n) {
    if (std::is_same_v<T, Pooled> && n == 1) {
      pool_->Deallocate(p);
      return;
    }
    std::allocator<T>().deallocate(p, n);
  }

  NodePool* pool() const { return pool_; }
  template <typename U>
  bool operator==(const PoolAllocator<U, Pooled>& other) const {
    return pool_ == other.pool();
  }
  template <typename U>
  bool operator!=(const PoolAllocator<U, Pooled>& other) const {
    return pool_ != other.pool();
  }

 private:
  NodePool* pool_;
};

// Reference-counted, pointer-stable copies of strings shared by many members. Acquire returns
// the one copy of `s` (valid until the matching last Release); the count is how many holders
// there are, so the interner doubles as a per-value member count (e.g. members per host).
class StringInterner {
 public:
  using Map = absl::node_hash_map<std::string, uint32_t>;

  const std::string* Acquire(absl::string_view s) {
    auto [it, inserted] = counts_.try_emplace(s, 0);
    ++it->second;
    return &it->first;
  }
  // `s` must come from Acquire; nullptr is ignored.
  void Release(const std::string* s) {
    if (s == nullptr) return;
    auto it = counts_.find(*s);
    if (it != counts_.end() && --it->second == 0) counts_.erase(it);
  }

  size_t size() const { return counts_.size(); }
  uint32_t count(absl::string_view s) const {
    auto it = counts_.find(s);
    return it == counts_.end() ? 0 : it->second;
  }
  Map::const_iterator begin() const { return counts_.begin(); }
  Map::const_iterator end() const { return counts_.end(); }

 private:
  Map counts_;
};

// A string of up to N characters stored inline (no heap block); longer values, which the core
// never issues but may restore from an older store, go to the heap.
template <size_t N>
class InlineString {
 public:
  InlineString() = default;
  // Implicit, like std::string's: it stands in for one (node ids, timer names).
  InlineString(absl::string_view s) { Assign(s); }          // NOLINT
  InlineString(const std::string& s) { Assign(s); }         // NOLINT
  InlineString(const char* s) { Assign(absl::string_view(s)); }  // NOLINT
  InlineString(const InlineString& other) { Assign(other.view()); }
  InlineString& operator=(const InlineString& other) {
    if (this != &other) Assign(other.view());
    return *this;
  }
  InlineString& operator=(absl::string_view s) {
    Assign(s);
    return *this;
  }
  InlineString& operator=(const std::string& s) { return *this = absl::string_view(s); }
  InlineString& operator=(const char* s) { return *this = absl::string_view(s); }
  ~InlineString() { FreeHeap(); }

  absl::string_view view() const {
    return size_ <= N ? absl::string_view(buf_, size_) : absl::string_view(heap_, size_);
  }
  std::string str() const { return std::string(view()); }
  operator absl::string_view() const { return view(); }  // NOLINT
  friend bool operator==(const InlineString& a, const InlineString& b) {
    return a.view() == b.view();
  }
  friend bool operator!=(const InlineString& a, const InlineString& b) { return !(a == b); }
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }

 private:
  void Assign(absl::string_view s) {
    if (s.data() == data()) return;
    FreeHeap();
    size_ = static_cast<uint32_t>(s.size());
    if (s.size() <= N) {
      if (!s.empty()) std::memcpy(buf_, s.data(), s.size());
    } else {
      heap_ = new char[s.size()];
      std::memcpy(heap_, s.data(), s.size());
    }
  }
  const char* data() const { return size_ <= N ? buf_ : heap_; }
  void FreeHeap() {
    if (size_ > N) delete[] heap_;
    size_ = 0;
  }

  uint32_t size_ = 0;
  union {
    char buf_[N];
    char* heap_;
  };
};

// A node id (or barrier name): at most 128 characters, usually a small number, a host-derived
// name or a 36-character UUID (the client's default). Up to 40 are stored inline, so a member's
// id costs no heap block of its own in its record or in its liveness timer.
using NodeId = InlineString<40>;

// Transparent hash and equality over string views, for maps keyed by NodeId that are looked up
// with std::string or absl::string_view.
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(absl::string_view s) const { return absl::Hash<absl::string_view>()(s); }
};
struct StringViewEq {
  using is_transparent = void;
  bool operator()(absl::string_view a, absl::string_view b) const { return a == b; }
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_CORE_COMPACT_H_
