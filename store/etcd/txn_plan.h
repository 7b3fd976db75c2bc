// TxnPlan: turns an ordered sequence of key writes (the KeyOps of one or more batches) into etcd
// operations with the same final effect, under etcd's rule that one txn may write a key at most
// once: no two puts of one key, and no put inside a range the same txn deletes (etcd refuses
// such a txn with "duplicate key given in txn request").
//
// The plan keeps, per key, the last write (put or delete), and the range deletes. A range delete
// drops the earlier writes of the keys it covers; a later put of a covered key survives it.
// Hence every remaining put inside a deleted range came after that delete, and the final state
// is "delete the ranges, then apply the per-key writes". Two ways to emit it:
//   * SingleTxnOps(): for ONE txn. Each merged range is split around the puts it contains
//     ([a, p1), [p1 "\0", p2), ... [pn "\0", b)); deletes of keys inside a range are dropped.
//     All operations touch disjoint keys, so their order does not matter.
//   * RangeDeleteOps() then PointOps(): for several txns applied in that order (the journal of a
//     batch too large for one txn, where intermediate states are hidden by the journal).
#ifndef MS_RENDEZVOUS_STORE_ETCD_TXN_PLAN_H_
#define MS_RENDEZVOUS_STORE_ETCD_TXN_PLAN_H_

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "etcd/etcdserverpb/rpc.pb.h"
#include "store/etcd/etcd_records.h"

namespace ms_rendezvous::core::etcd_store {

class TxnPlan {
 public:
  struct Size {
    size_t ops = 0;
    size_t bytes = 0;  // of the operations inside a TxnRequest
  };
  // Upper bound of an operation's encoding beyond its keys and value (tags and lengths).
  static constexpr size_t kOpOverheadBytes = 32;

  void Add(const KeyOp& op);
  void Add(const std::vector<KeyOp>& ops) {
    for (const KeyOp& op : ops) Add(op);
  }
  bool empty() const { return points_.empty() && ranges_.empty(); }

  // What SingleTxnOps() would hold: exact count, bytes as encoded inside a TxnRequest.
  Size SingleTxnSize() const;
  // An upper bound of how much adding `ops` (to ANY plan) can grow SingleTxnSize(): a put may
  // add itself plus one more piece of a range it splits, a delete itself, a range delete itself.
  static Size UpperBound(const std::vector<KeyOp>& ops);

  std::vector<etcdserverpb::RequestOp> SingleTxnOps() const;
  std::vector<etcdserverpb::RequestOp> RangeDeleteOps() const;
  std::vector<etcdserverpb::RequestOp> PointOps() const;

 private:
  using Range = std::pair<std::string, std::string>;  // [first, second)
  std::vector<Range> MergedRanges() const;
  static bool Covered(const std::vector<Range>& merged, const std::string& key);

  std::map<std::string, std::optional<std::string>> points_;  // nullopt: delete
  std::vector<Range> ranges_;
};

// Bytes a RequestOp adds to a TxnRequest (its encoding plus the repeated field's framing).
size_t EncodedOpBytes(const etcdserverpb::RequestOp& op);

}  // namespace ms_rendezvous::core::etcd_store

#endif  // MS_RENDEZVOUS_STORE_ETCD_TXN_PLAN_H_
