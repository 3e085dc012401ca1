// Chooses the back end from the URL scheme.
#include <string>

#include "store/backends.hpp"

namespace licensing::store {

Result<std::unique_ptr<Store>, StoreError> open_store(std::string_view url) { return open_store(url, StoreOptions{}); }

Result<std::unique_ptr<Store>, StoreError> open_store(std::string_view url, const StoreOptions& options) {
  constexpr std::string_view kSqlitePrefix = "sqlite://";
  if (url.starts_with(kSqlitePrefix)) {
    const std::string path{url.substr(kSqlitePrefix.size())};
    if (!path.starts_with('/')) {
      return fail(StoreError::unavailable,
                  "SQLite URL must name an absolute path: sqlite:///absolute/path.db (three slashes)");
    }
    return detail::open_sqlite_store(path, options);
  }

  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) {
    return detail::open_postgres_store(std::string{url}, options);
  }

  // The URL may carry a password, so the detail names only the expected forms.
  return fail(StoreError::unavailable,
              "unsupported database URL scheme: expected sqlite:///absolute/path.db, postgresql://... or "
              "postgres://...");
}

}  // namespace licensing::store
