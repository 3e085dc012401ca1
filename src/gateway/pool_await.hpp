// Runs a blocking function on the WorkerPool and resumes the calling coroutine on its
// own executor with the result. Returns nullopt at once when the pool's queue is full,
// and also when `work` throws.
#pragma once

#include <utility>  // Boost 1.74's awaitable.hpp needs it first with GCC 12.

#include <boost/asio/async_result.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <functional>
#include <memory>
#include <optional>

#include "gateway/worker_pool.hpp"

namespace licensing::gateway {

template <typename T>
boost::asio::awaitable<std::optional<T>> run_on_pool(WorkerPool& pool, std::function<T()> work) {
  auto initiate = [&pool, work = std::move(work)](auto handler) mutable {
    auto executor = boost::asio::get_associated_executor(handler);
    auto shared_handler = std::make_shared<decltype(handler)>(std::move(handler));
    const bool accepted = pool.try_submit([work, shared_handler, executor]() mutable {
      std::optional<T> result;
      try {
        result.emplace(work());
      } catch (...) {
        // Resume the caller in every case; it treats a missing result as unavailable.
      }
      boost::asio::post(executor, [shared_handler, result = std::move(result)]() mutable {
        (*shared_handler)(std::move(result));
      });
    });
    if (!accepted) {
      boost::asio::post(executor, [shared_handler]() mutable { (*shared_handler)(std::optional<T>()); });
    }
  };
  // GCC 12 destroys temporaries inside a co_await expression twice, so the operation is
  // a named value.
  auto operation = boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(std::optional<T>)>(
      std::move(initiate), boost::asio::use_awaitable);
  co_return co_await std::move(operation);
}

}  // namespace licensing::gateway
