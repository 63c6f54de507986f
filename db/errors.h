#pragma once
/// \file
/// Error codes (Error::code) shared by the database backends.

namespace storewatch::db {

/// A database server that is out of reach (down, restarting, failing over,
/// not there yet): the operation may succeed if tried again later. The
/// SQLite backend never returns it.
inline constexpr int kUnreachable = -2;

}  // namespace storewatch::db
