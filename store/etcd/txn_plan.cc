#include "store/etcd/txn_plan.h"

#include <algorithm>

#include "google/protobuf/io/coded_stream.h"

namespace ms_rendezvous::core::etcd_store {
namespace {

etcdserverpb::RequestOp PutOp(const std::string& key, const std::string& value) {
  etcdserverpb::RequestOp op;
  etcdserverpb::PutRequest* put = op.mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  return op;
}

etcdserverpb::RequestOp DeleteOp(const std::string& key, const std::string& range_end) {
  etcdserverpb::RequestOp op;
  etcdserverpb::DeleteRangeRequest* del = op.mutable_request_delete_range();
  del->set_key(key);
  if (!range_end.empty()) del->set_range_end(range_end);
  return op;
}

}  // namespace

size_t EncodedOpBytes(const etcdserverpb::RequestOp& op) {
  const size_t n = op.ByteSizeLong();
  return 1 + google::protobuf::io::CodedOutputStream::VarintSize64(n) + n;
}

void TxnPlan::Add(const KeyOp& op) {
  switch (op.kind) {
    case KeyOp::Kind::kPut:
      points_[op.key] = op.value;
      break;
    case KeyOp::Kind::kDelete:
      points_[op.key] = std::nullopt;
      break;
    case KeyOp::Kind::kDeleteRange: {
      // Earlier writes inside the range are superseded by it.
      auto it = points_.lower_bound(op.key);
      while (it != points_.end() && it->first < op.range_end) it = points_.erase(it);
      ranges_.emplace_back(op.key, op.range_end);
      break;
    }
  }
}

std::vector<TxnPlan::Range> TxnPlan::MergedRanges() const {
  std::vector<Range> sorted = ranges_;
  std::sort(sorted.begin(), sorted.end());
  std::vector<Range> merged;
  for (Range& r : sorted) {
    if (!merged.empty() && r.first <= merged.back().second) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(std::move(r));
    }
  }
  return merged;
}

bool TxnPlan::Covered(const std::vector<Range>& merged, const std::string& key) {
  // The last range starting at or before `key`.
  auto it = std::upper_bound(merged.begin(), merged.end(), key,
                             [](const std::string& k, const Range& r) { return k < r.first; });
  if (it == merged.begin()) return false;
  --it;
  return key < it->second;
}

std::vector<etcdserverpb::RequestOp> TxnPlan::SingleTxnOps() const {
  std::vector<etcdserverpb::RequestOp> ops;
  const std::vector<Range> merged = MergedRanges();
  for (const Range& r : merged) {
    // Cut the range around the puts inside it: etcd forbids a put inside a range deleted by the
    // same txn, and "delete [a,b) except p" is exactly [a,p) + [p\0,b).
    std::string from = r.first;
    for (auto it = points_.lower_bound(r.first); it != points_.end() && it->first < r.second;
         ++it) {
      if (!it->second.has_value()) continue;  // a delete inside the range: the range does it
      if (from < it->first) ops.push_back(DeleteOp(from, it->first));
      from = it->first;
      from.push_back('\0');
    }
    if (from < r.second) ops.push_back(DeleteOp(from, r.second));
  }
  for (const auto& [key, value] : points_) {
    if (value.has_value()) {
      ops.push_back(PutOp(key, *value));
    } else if (!Covered(merged, key)) {
      ops.push_back(DeleteOp(key, ""));
    }
  }
  return ops;
}

TxnPlan::Size TxnPlan::SingleTxnSize() const {
  Size size;
  for (const etcdserverpb::RequestOp& op : SingleTxnOps()) {
    ++size.ops;
    size.bytes += EncodedOpBytes(op);
  }
  return size;
}

TxnPlan::Size TxnPlan::UpperBound(const std::vector<KeyOp>& ops) {
  Size size;
  for (const KeyOp& op : ops) {
    switch (op.kind) {
      case KeyOp::Kind::kPut:
        // The put, and the extra piece of a deleted range it may cut: [p\0, b) next to [a, p).
        size.ops += 2;
        size.bytes += op.key.size() + op.value.size() + kOpOverheadBytes;
        size.bytes += 2 * op.key.size() + 1 + kOpOverheadBytes;
        break;
      case KeyOp::Kind::kDelete:
        size.ops += 1;
        size.bytes += op.key.size() + kOpOverheadBytes;
        break;
      case KeyOp::Kind::kDeleteRange:
        size.ops += 1;
        size.bytes += op.key.size() + op.range_end.size() + kOpOverheadBytes;
        break;
    }
  }
  return size;
}

std::vector<etcdserverpb::RequestOp> TxnPlan::RangeDeleteOps() const {
  std::vector<etcdserverpb::RequestOp> ops;
  for (const Range& r : MergedRanges()) ops.push_back(DeleteOp(r.first, r.second));
  return ops;
}

std::vector<etcdserverpb::RequestOp> TxnPlan::PointOps() const {
  const std::vector<Range> merged = MergedRanges();
  std::vector<etcdserverpb::RequestOp> ops;
  for (const auto& [key, value] : points_) {
    if (value.has_value()) {
      ops.push_back(PutOp(key, *value));
    } else if (!Covered(merged, key)) {
      ops.push_back(DeleteOp(key, ""));
    }
  }
  return ops;
}

}  // namespace ms_rendezvous::core::etcd_store
