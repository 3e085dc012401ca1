#include "common/json.hpp"

#include <set>
#include <string>
#include <vector>

namespace licensing::json {
namespace {

struct Rejected {
  JsonError code;
  std::string detail;
};

}  // namespace

Result<nlohmann::json, JsonError> parse_strict(std::string_view text, std::size_t max_depth) {
  // One set of member names per open object; arrays push an empty marker so depth lines up.
  std::vector<std::set<std::string>> open_objects;

  auto check = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) -> bool {
    using Event = nlohmann::json::parse_event_t;
    switch (event) {
      case Event::object_start:
      case Event::array_start:
        if (static_cast<std::size_t>(depth) + 1 > max_depth) {
          throw Rejected{JsonError::too_deep, "nesting deeper than " + std::to_string(max_depth)};
        }
        open_objects.emplace_back();
        break;
      case Event::object_end:
      case Event::array_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case Event::key: {
        const auto& name = parsed.get_ref<const std::string&>();
        if (!open_objects.empty() && !open_objects.back().insert(name).second) {
          throw Rejected{JsonError::duplicate_member, "duplicate member \"" + name + "\""};
        }
        break;
      }
      case Event::value:
        break;
    }
    return true;
  };

  try {
    return nlohmann::json::parse(text.begin(), text.end(), check, /*allow_exceptions=*/true,
                                 /*ignore_comments=*/false);
  } catch (const Rejected& rejected) {
    return fail(rejected.code, rejected.detail);
  } catch (const nlohmann::json::exception& error) {
    return fail(JsonError::syntax, error.what());
  }
}

}  // namespace licensing::json
