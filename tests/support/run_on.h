#pragma once
/// \file
/// Runs a function on an io_context's thread from a test's thread and waits
/// for its result: the objects under test are touched only on their loop.

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <future>
#include <memory>
#include <utility>

namespace storewatch::test {

template <class F>
auto run_on(boost::asio::io_context& io, F f) -> decltype(f()) {
  auto task = std::make_shared<std::packaged_task<decltype(f())()>>(std::move(f));
  auto result = task->get_future();
  boost::asio::post(io, [task] { (*task)(); });
  return result.get();
}

}  // namespace storewatch::test
