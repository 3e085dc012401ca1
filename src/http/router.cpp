#include "http/server.hpp"

#include <algorithm>
#include <stdexcept>

namespace licensing::http {
namespace {

// Splits "/a/b" into {"a", "b"}; "/" gives one empty segment and "/a/" ends with one.
std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> segments;
  path.remove_prefix(1);
  for (;;) {
    const auto slash = path.find('/');
    segments.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return segments;
}

bool is_parameter(std::string_view segment) {
  return segment.size() >= 2 && segment.front() == '{' && segment.back() == '}';
}

std::string_view parameter_name(std::string_view segment) { return segment.substr(1, segment.size() - 2); }

// Checks one pattern segment; throws std::invalid_argument naming the pattern.
void check_segment(std::string_view pattern, std::string_view segment, std::vector<std::string_view>& names) {
  if (!is_parameter(segment)) {
    if (segment.find_first_of("{}") != std::string_view::npos) {
      throw std::invalid_argument("route pattern '" + std::string(pattern) + "' has a brace outside a \"{name}\" segment");
    }
    return;
  }

  const auto name = parameter_name(segment);
  if (name.empty() || name.find_first_of("{}/") != std::string_view::npos) {
    throw std::invalid_argument("route pattern '" + std::string(pattern) + "' has an invalid parameter name");
  }
  if (std::find(names.begin(), names.end(), name) != names.end()) {
    throw std::invalid_argument("route pattern '" + std::string(pattern) + "' repeats parameter '" + std::string(name) + "'");
  }
  names.push_back(name);
}

// Compares a path with a route's segments, filling `params` from "{name}" segments.
bool segments_match(const std::vector<std::string>& pattern, const std::vector<std::string_view>& path,
                    std::map<std::string, std::string>& params) {
  if (pattern.size() != path.size()) return false;

  params.clear();
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (is_parameter(pattern[i])) {
      if (path[i].empty()) return false;
      params.emplace(std::string(parameter_name(pattern[i])), std::string(path[i]));
      continue;
    }
    if (pattern[i] != path[i]) return false;
  }
  return true;
}

}  // namespace

void Router::add(beast_http::verb method, std::string pattern, Handler handler) {
  if (pattern.empty() || pattern.front() != '/') {
    throw std::invalid_argument("route pattern '" + pattern + "' does not start with '/'");
  }
  if (!handler) {
    throw std::invalid_argument("route " + std::string(beast_http::to_string(method)) + " " + pattern + " has no handler");
  }
  for (const auto& route : routes_) {
    if (route.method == method && route.pattern == pattern) {
      throw std::invalid_argument("route " + std::string(beast_http::to_string(method)) + " " + pattern + " is added twice");
    }
  }

  std::vector<std::string> segments;
  std::vector<std::string_view> names;
  for (const auto segment : split_path(pattern)) {
    check_segment(pattern, segment, names);
    segments.emplace_back(segment);
  }
  routes_.push_back(Route{method, std::move(pattern), std::move(segments), std::move(handler)});
}

Router::Match Router::match(beast_http::verb method, std::string_view path) const {
  Match result;
  if (path.empty() || path.front() != '/') return result;

  const auto segments = split_path(path);
  std::map<std::string, std::string> params;
  for (const auto& route : routes_) {
    if (!segments_match(route.segments, segments, params)) continue;

    if (!result.path_known) result.pattern = route.pattern;
    result.path_known = true;
    if (std::find(result.allowed.begin(), result.allowed.end(), route.method) == result.allowed.end()) {
      result.allowed.push_back(route.method);
    }
    if (route.method == method && result.handler == nullptr) {
      result.handler = &route.handler;
      result.params = params;
      result.pattern = route.pattern;
    }
  }
  return result;
}

}  // namespace licensing::http
