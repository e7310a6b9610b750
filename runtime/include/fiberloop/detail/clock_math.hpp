#pragma once
// Deadline arithmetic that cannot overflow. A timeout comes from the user (or from
// outside: a config file, a header) and may be huge — nanoseconds::max(), hours::max()
// — where `now() + timeout` is undefined behaviour and in practice wraps into the
// past, so a wait meant to be endless would time out at once. Every deadline in
// fiberloop is computed here: past the representable range it clamps to "never".

#include <chrono>
#include <limits>
#include <ratio>
#include <type_traits>

namespace fiberloop::detail {

/// `d` in nanoseconds, clamped to nanoseconds::max()/min() instead of overflowing.
template <class Rep, class Period>
constexpr std::chrono::nanoseconds saturating_nanoseconds(std::chrono::duration<Rep, Period> d) noexcept {
  using std::chrono::nanoseconds;
  using to_ns = std::ratio_divide<Period, std::nano>;
  if constexpr (std::is_integral_v<Rep> && std::is_signed_v<Rep> && sizeof(Rep) <= sizeof(nanoseconds::rep) &&
                to_ns::den == 1) {
    // The common case (nanoseconds, milliseconds, hours...): integer checks only, as
    // timers are set on hot paths. nanoseconds itself comes back as it is.
    constexpr nanoseconds::rep factor = to_ns::num;
    const nanoseconds::rep count = d.count();
    if (count > nanoseconds::max().count() / factor) return nanoseconds::max();
    if (count < nanoseconds::min().count() / factor) return nanoseconds::min();
    return nanoseconds(count * factor);
  }
  using wide = std::chrono::duration<long double, std::nano>;
  if constexpr (std::is_floating_point_v<Rep>) {
    if (d.count() != d.count()) return nanoseconds::zero();  // NaN: no time at all
  }
  const long double ns = std::chrono::duration_cast<wide>(d).count();
  if (ns >= static_cast<long double>(nanoseconds::max().count())) return nanoseconds::max();
  if (ns <= static_cast<long double>(nanoseconds::min().count())) return nanoseconds::min();
  if constexpr (std::is_floating_point_v<Rep>) {
    return nanoseconds(static_cast<nanoseconds::rep>(ns));
  } else {
    return std::chrono::duration_cast<nanoseconds>(d);  // in range: exact
  }
}

/// `from + d`, clamped to time_point::max()/min() instead of overflowing.
template <class Rep, class Period>
constexpr std::chrono::steady_clock::time_point saturating_add(std::chrono::steady_clock::time_point from,
                                                               std::chrono::duration<Rep, Period> d) noexcept {
  using time_point = std::chrono::steady_clock::time_point;
  static_assert(std::is_same_v<time_point::duration, std::chrono::nanoseconds>,
                "fiberloop assumes steady_clock counts nanoseconds (libstdc++ and libc++ do)");
  const std::chrono::nanoseconds delta = saturating_nanoseconds(d);
  const std::chrono::nanoseconds since_epoch = from.time_since_epoch();
  // max - delta and min - delta cannot overflow for a delta of that sign.
  if (delta > std::chrono::nanoseconds::zero() && since_epoch > std::chrono::nanoseconds::max() - delta)
    return time_point::max();
  if (delta < std::chrono::nanoseconds::zero() && since_epoch < std::chrono::nanoseconds::min() - delta)
    return time_point::min();
  return from + delta;
}

/// steady_clock::now() + d, saturated: the deadline of a wait that starts now.
template <class Rep, class Period>
std::chrono::steady_clock::time_point deadline_after(std::chrono::duration<Rep, Period> d) noexcept {
  return saturating_add(std::chrono::steady_clock::now(), d);
}

/// What is left until `deadline` as of `now`: zero once it has passed. (`deadline -
/// now` itself overflows for a deadline saturated to time_point::min().)
constexpr std::chrono::nanoseconds time_left(std::chrono::steady_clock::time_point deadline,
                                             std::chrono::steady_clock::time_point now) noexcept {
  return deadline > now ? deadline - now : std::chrono::nanoseconds::zero();
}

/// time_left(deadline, steady_clock::now()).
inline std::chrono::nanoseconds time_left(std::chrono::steady_clock::time_point deadline) noexcept {
  return time_left(deadline, std::chrono::steady_clock::now());
}

}  // namespace fiberloop::detail
