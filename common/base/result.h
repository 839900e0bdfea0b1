// A value or the reason there is none: the project's stand-in for C++23's
// std::expected, for calls whose failure the caller must handle and log.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace relayguard {

template <class T>
class Result {
public:
    Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit, like std::expected
    static Result failure(std::string why) {
        Result r;
        r.error_ = std::move(why);
        return r;
    }
    explicit operator bool() const { return value_.has_value(); }
    T& operator*() { return *value_; }
    const T& operator*() const { return *value_; }
    T* operator->() { return &*value_; }
    const T* operator->() const { return &*value_; }
    const std::string& error() const { return error_; }

private:
    Result() = default;
    std::optional<T> value_;
    std::string error_;
};

// Success with nothing to carry, or the reason it failed: for calls that
// only do something (bind, drop privileges, reload, check a value).
// `return Done{};` or `return Status::failure(why);`.
struct Done {};
using Status = Result<Done>;

// A lookup in a store: what was found (std::nullopt when nothing is), or a
// failure when the store could not be asked. The one spelling of "three
// outcomes" for lookups, instead of an optional inside an optional.
template <class T>
using Lookup = Result<std::optional<T>>;

}  // namespace relayguard
