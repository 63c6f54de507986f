#pragma once
/// \file
/// What the files that define Store (store.cpp, store_notifications.cpp)
/// share and nobody else uses: reading a statement's rows into a vector.

#include <vector>

#include "base/result.h"
#include "db/sqlite.h"

namespace storewatch::agent::store_internal {

template <class T, class F>
Result<std::vector<T>> collect(db::Statement& stmt, F&& row) {
  std::vector<T> out;
  auto st = stmt.each([&](const db::Statement& s) {
    out.push_back(row(s));
    return true;
  });
  if (!st) return st.error();
  return out;
}

}  // namespace storewatch::agent::store_internal
