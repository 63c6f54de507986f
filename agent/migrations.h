#pragma once
/// \file
/// The agent database's schema history: the steps agent/store.cpp migrates
/// a file through (and checks a read-only file against). Never edit a
/// released step: add one.

#include <span>

#include "db/sqlite.h"

namespace storewatch::agent {

/// The schema steps of the agent's database, oldest first.
std::span<const db::Migration> store_migrations();

}  // namespace storewatch::agent
